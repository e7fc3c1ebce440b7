import fs from "node:fs";
import path from "node:path";
import type { Reporter } from "../runner/reporter.js";
import type { TestResult } from "../runner/run.js";
import { configError, errorMessage } from "../util/errors.js";

/** What `--reporter blob` writes into the output folder: every result, with its folder beside it. */
export const BLOB_FILE = "blob.json";
const BLOB_FORMAT = 1;

interface Blob {
  format: number;
  createdAt: string;
  /** `--shard i/n`, if the run had one */
  shard?: string;
  results: (Omit<TestResult, "error" | "resultDir"> & { error?: string; resultDir: string })[];
}

/** `--reporter blob`: a mergeable record of this run (a shard of a suite), for `vmrig merge-reports`. */
export function blobReporter(shard?: string): Reporter {
  return {
    onEnd: (results, s) => {
      const blob: Blob = {
        format: BLOB_FORMAT,
        createdAt: new Date().toISOString(),
        ...(shard ? { shard } : {}),
        results: results.map(({ error, ...r }) => ({
          ...r,
          ...(error ? { error: errorMessage(error) } : {}),
          // relative: the folder may be moved, e.g. downloaded as a CI artifact
          resultDir: r.resultDir ? path.relative(s.outputDir, r.resultDir) : "",
          ...(r.failedAttempts
            ? {
                failedAttempts: r.failedAttempts.map((a) => ({
                  ...a,
                  resultDir: path.relative(s.outputDir, a.resultDir),
                })),
              }
            : {}),
        })),
      };
      fs.mkdirSync(s.outputDir, { recursive: true });
      const file = path.join(s.outputDir, BLOB_FILE);
      fs.writeFileSync(file, JSON.stringify(blob, null, 2));
      return `blob: ${file} (vmrig merge-reports)`;
    },
  };
}

/**
 * The results of several blob folders (one per shard), their result folders copied into
 * `outputDir` so that reports link to every log, console and screenshot. A test name
 * that two shards both ran keeps both, the second under `<name>@<shard folder>`.
 */
export function mergeBlobs(dirs: string[], outputDir: string): TestResult[] {
  const merged: TestResult[] = [];
  const taken = new Set<string>();
  fs.mkdirSync(outputDir, { recursive: true });
  for (const dir of dirs) {
    const file = path.join(dir, BLOB_FILE);
    if (!fs.existsSync(file)) {
      throw configError(`${dir} has no ${BLOB_FILE}`, {
        hint: "run each shard with `--reporter blob` (and its own --output-dir)",
      });
    }
    const blob = JSON.parse(fs.readFileSync(file, "utf8")) as Blob;
    if (blob.format !== BLOB_FORMAT)
      throw configError(`${file} is blob format ${blob.format}; this vmrig reads ${BLOB_FORMAT}`);
    // a result folder of the shard, copied under a name no other shard took: its new absolute path
    const copy = (rel: string): string => {
      let folder = rel ? path.basename(rel) : "";
      if (folder && taken.has(folder)) folder = `${folder}@${path.basename(path.resolve(dir))}`;
      if (!folder) return "";
      taken.add(folder);
      fs.cpSync(path.join(dir, rel), path.join(outputDir, folder), { recursive: true });
      return path.join(path.resolve(outputDir), folder);
    };
    for (const r of blob.results) {
      merged.push({
        ...r,
        resultDir: copy(r.resultDir),
        ...(r.failedAttempts
          ? { failedAttempts: r.failedAttempts.map((a) => ({ ...a, resultDir: copy(a.resultDir) })) }
          : {}),
        ...(r.error !== undefined ? { error: new Error(r.error) } : {}),
      } as TestResult);
    }
  }
  return merged;
}
