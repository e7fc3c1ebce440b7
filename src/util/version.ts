import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

let version: string | undefined;
let codeHash: string | undefined;

/** The package root: dist/util/ → ../.. (src/util/ under a TS runner: the same). */
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

export function vmrigVersion(): string {
  version ??= (JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")) as { version: string })
    .version;
  return version;
}

/** Every file below `dir`, sorted, as paths relative to the package root. */
function filesBelow(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !e.name.endsWith(".map") && !e.name.endsWith(".tsbuildinfo")) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/**
 * A hash of vmrig's own code: the compiled driver (or its sources, when run from them), the
 * scripts that run in the guest and the Python runtime. What a cached pass is keyed by, so
 * a changed vmrig never reports `cached` for a run it never made — whatever its version says.
 */
export function vmrigCodeHash(): string {
  if (codeHash) return codeHash;
  const h = createHash("sha256").update(vmrigVersion());
  const code = path.basename(path.dirname(path.dirname(fileURLToPath(import.meta.url)))); // "dist" or "src"
  for (const dir of [code, "guest", "python"]) {
    for (const f of filesBelow(path.join(packageRoot, dir))) {
      h.update(path.relative(packageRoot, f)).update("\0").update(fs.readFileSync(f)).update("\0");
    }
  }
  codeHash = h.digest("hex");
  return codeHash;
}
