import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { isTestDefinition, type TestDefinition } from "./test.js";
import { configError } from "../util/errors.js";

export interface LoadedTest {
  file: string;
  def: TestDefinition;
  /** the test file and every local module it imports, for the result cache */
  sources: Record<string, string>;
  /** the OCR methods the script's code calls, found before anything boots (they need enableOCR) */
  ocrCalls: string[];
}

/** OCR calls, in TypeScript and in a Python script's snake_case. */
const OCR_METHODS = [
  "getScreenText",
  "getScreenTextVariants",
  "waitForText",
  "get_screen_text",
  "get_screen_text_variants",
  "wait_for_text",
];

const packageEntry = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "index.js");

/**
 * Bundle the test file (TypeScript, local imports) into one ES module and
 * import it. `vmrig` resolves to this very package, so the test and the driver
 * share one module instance. Stack traces map back to the user's lines.
 */
export async function loadTest(file: string): Promise<LoadedTest> {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw configError(`test file ${file} does not exist`);
  process.setSourceMapsEnabled(true);
  // Next to the test file, so that bare imports resolve from the user's node_modules;
  // esbuild is told this path so the source map's paths are relative to it.
  const out = path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid}.vmrig.mjs`);
  let result;
  try {
    result = await build({
      entryPoints: [abs],
      bundle: true,
      write: false,
      outfile: out,
      format: "esm",
      platform: "node",
      target: "node20",
      sourcemap: "inline",
      metafile: true,
      logLevel: "silent",
      packages: "external",
      plugins: [
        {
          name: "vmrig-self",
          setup(b) {
            b.onResolve({ filter: /^vmrig$/ }, () => ({ path: packageEntry, external: true }));
          },
        },
      ],
    });
  } catch (e) {
    const errors =
      (e as { errors?: { text: string; location?: { file: string; line: number; column: number } }[] }).errors ?? [];
    throw configError(`cannot compile ${file}`, {
      output: errors
        .map((x) => `${x.location ? `${x.location.file}:${x.location.line}:${x.location.column}: ` : ""}${x.text}`)
        .join("\n"),
    });
  }
  const code = result.outputFiles[0]!.text;
  const sources: Record<string, string> = {};
  for (const input of Object.keys(result.metafile.inputs)) {
    const p = path.resolve(input);
    if (fs.existsSync(p))
      sources[path.relative(path.dirname(abs), p)] = createHash("sha256").update(fs.readFileSync(p)).digest("hex");
  }
  fs.writeFileSync(out, code);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(out).href)) as { default?: unknown };
  } finally {
    fs.rmSync(out, { force: true });
  }
  if (!isTestDefinition(mod.default)) {
    throw configError(`${file} must \`export default defineTest({ … })\``, {
      hint: 'import { defineTest } from "vmrig"',
    });
  }
  const ocrCalls = OCR_METHODS.filter((m) => new RegExp(`\\b${m}\\s*\\(`).test(code)).map((m) => `${m}()`);
  return { file: abs, def: mod.default, sources, ocrCalls };
}
