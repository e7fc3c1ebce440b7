import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
// typescript and eslint are loaded when a check runs (~1.3 s of start-up): a run whose
// check is cached, and every other command, never pays for them.
import type ts from "typescript";
import type { ESLint, Linter } from "eslint";
import { cacheRoot } from "../image/store.js";
import { configError } from "../util/errors.js";
import { vmrigCodeHash } from "../util/version.js";

const typesEntry = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "index.d.ts");
// Test scripts may use Node's modules (node:assert, node:fs): vmrig ships @types/node for them.
const nodeTypesRoot = path.dirname(path.dirname(createRequire(import.meta.url).resolve("@types/node/package.json")));

/** Rules that catch the typical bugs of an async test script. */
const LINT_RULES: Linter.RulesRecord = {
  "@typescript-eslint/no-floating-promises": "error",
  "@typescript-eslint/no-misused-promises": "error",
  "@typescript-eslint/await-thenable": "error",
  "@typescript-eslint/unbound-method": "error",
};

export interface CheckOptions {
  typeCheck: boolean;
  lint: boolean;
}

export interface Finding {
  file: string;
  line: number;
  column: number;
  message: string;
  source: "typescript" | "eslint";
}

function compilerOptions(ts: typeof import("typescript")): ts.CompilerOptions {
  return {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    skipLibCheck: true,
    allowImportingTsExtensions: true,
    types: ["node"],
    typeRoots: [nodeTypesRoot],
    // The test imports "vmrig": this very package, wherever the test lives.
    paths: { vmrig: [typesEntry] },
  };
}

/**
 * The type-checker and linter are optional peers of vmrig: a library user does not
 * install them, the CLI's check of test files needs them.
 */
async function checker<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if ((e as { code?: string }).code !== "ERR_MODULE_NOT_FOUND") throw e;
    throw configError(
      "vmrig checks a test file with typescript, eslint and typescript-eslint before it builds anything, and they are not installed",
      {
        hint: "npm install --save-dev typescript@~5.9 eslint@9 typescript-eslint@8 @types/node (or set skipTypeCheck and skipLint in defineTest)",
      },
    );
  }
}

/**
 * Type-check and lint a test file (and its local imports) before anything is
 * built: a typo'd machine name or a forgotten `await` costs no VM boot.
 */
export async function checkTestFile(file: string, opts: CheckOptions): Promise<Finding[]> {
  const { default: ts } = await checker(() => import("typescript"));
  const abs = path.resolve(file);
  const findings: Finding[] = [];
  const program = ts.createProgram([abs], compilerOptions(ts));
  if (opts.typeCheck) {
    for (const d of ts.getPreEmitDiagnostics(program)) {
      if (!d.file || d.file.fileName.includes("/node_modules/")) continue;
      const { line, character } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
      findings.push({
        file: d.file.fileName,
        line: line + 1,
        column: character + 1,
        message: ts.flattenDiagnosticMessageText(d.messageText, "\n"),
        source: "typescript",
      });
    }
  }
  if (opts.lint) {
    const { ESLint } = await checker(() => import("eslint"));
    const { default: tseslint } = await checker(() => import("typescript-eslint"));
    const files = program
      .getSourceFiles()
      .map((f) => f.fileName)
      .filter((f) => !f.includes("/node_modules/") && !f.endsWith(".d.ts"));
    const eslint = new ESLint({
      // the folder holding every file linted: ESLint ignores a file outside its cwd ("outside
      // of base path"), so a test importing a module from a sibling folder failed its lint
      cwd: commonDir(files.map((f) => path.dirname(f))),
      overrideConfigFile: true,
      overrideConfig: [
        {
          files: ["**/*.ts", "**/*.mts"],
          languageOptions: { parser: tseslint.parser, parserOptions: { programs: [program] } },
          plugins: { "@typescript-eslint": tseslint.plugin as unknown as ESLint.Plugin },
          rules: LINT_RULES,
        },
      ],
    });
    for (const r of await eslint.lintFiles(files)) {
      for (const m of r.messages) {
        findings.push({
          file: r.filePath,
          line: m.line,
          column: m.column,
          message: `${m.message} (${m.ruleId ?? "eslint"})`,
          source: "eslint",
        });
      }
    }
  }
  return findings;
}

/** The deepest folder that holds every one of `dirs` (absolute paths). */
function commonDir(dirs: string[]): string {
  let common = dirs[0] ?? "/";
  for (const d of dirs)
    while (d !== common && !d.startsWith(common.endsWith("/") ? common : common + "/")) common = path.dirname(common);
  return common;
}

/** Throw a configuration error (exit 2) listing every finding. */
export function reportFindings(file: string, findings: Finding[]): void {
  if (findings.length === 0) return;
  const rel = (f: string) => {
    const r = path.relative(process.cwd(), f);
    return r && !r.startsWith("..") ? r : f;
  };
  const kinds = [...new Set(findings.map((f) => (f.source === "typescript" ? "type" : "lint")))].join(" and ");
  throw configError(`${rel(file)} has ${findings.length} ${kinds} error(s); nothing was built or booted`, {
    output: findings.map((f) => `${rel(f.file)}:${f.line}:${f.column}: ${f.message}`).join("\n"),
    hint: findings.some((f) => f.message.includes("no-floating-promises"))
      ? "every Machine call returns a promise: `await` it"
      : "fix the errors, or set skipTypeCheck / skipLint in defineTest to run anyway",
  });
}

/**
 * Type-check and lint, unless the same sources passed the same checks against the same
 * vmrig (code and declarations) before (a `--rerun` of an unchanged test skips ~2 s of checking).
 * Returns whether the pass came from the cache.
 */
export async function checkOnce(file: string, sources: Record<string, string>, opts: CheckOptions): Promise<boolean> {
  const key = createHash("sha256")
    .update(JSON.stringify({ sources, opts, vmrig: vmrigCodeHash() })) // the code hash covers its .d.ts files
    .digest("hex")
    .slice(0, 32);
  const marker = path.join(cacheRoot(), "checks", key);
  if (fs.existsSync(marker)) return true;
  reportFindings(file, await checkTestFile(file, opts));
  fs.mkdirSync(path.dirname(marker), { recursive: true });
  fs.writeFileSync(marker, `${path.resolve(file)}\n`);
  return false;
}
