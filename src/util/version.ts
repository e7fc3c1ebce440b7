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

/**
 * A hash of vmrig's own code: the compiled driver with its declarations (or its sources, when
 * run from them), the scripts that run in the guest and the Python runtime. What a cached pass is keyed by, so
 * a changed vmrig never reports `cached` for a run it never made — whatever its version says.
 */
export function vmrigCodeHash(): string {
  if (codeHash) return codeHash;
  const h = createHash("sha256").update(vmrigVersion());
  const code = path.basename(path.dirname(path.dirname(fileURLToPath(import.meta.url)))); // "dist" or "src"
  for (const dir of [code, "guest", "python"]) {
    const files = fs.readdirSync(path.join(packageRoot, dir), { recursive: true, withFileTypes: true });
    const paths = files
      .filter((e) => e.isFile() && !e.name.endsWith(".map") && !e.name.endsWith(".tsbuildinfo"))
      .map((e) => path.join(e.parentPath, e.name))
      .sort();
    for (const f of paths) h.update(path.relative(packageRoot, f)).update("\0").update(fs.readFileSync(f)).update("\0");
  }
  codeHash = h.digest("hex");
  return codeHash;
}
