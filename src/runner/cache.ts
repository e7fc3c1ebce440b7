import fs from "node:fs";
import path from "node:path";
import type { EvaluatedConfig } from "../config/eval.js";
import { cacheRoot, canonicalJson, hashInputs } from "../image/store.js";
import { vmrigCodeHash } from "../util/version.js";
import type { LoadedTest } from "./load.js";

export interface CachedPass {
  name: string;
  file: string;
  passedAt: string;
  durationMs: number;
}

/**
 * A passed run is cached under the hash of all it depends on: vmrig's own code (not its version string),
 * the test file and every local module it imports, and every node's evaluated
 * config (which, with the version, determines the images: store entries are
 * keyed the same way).
 */
export function resultKey(loaded: LoadedTest, configs: Record<string, EvaluatedConfig>): string {
  return hashInputs({
    kind: "result",
    vmrig: vmrigCodeHash(),
    sources: loaded.sources,
    configs: JSON.parse(canonicalJson(configs)) as unknown,
  });
}

function entry(key: string): string {
  return path.join(cacheRoot(), "results", `${key}.json`);
}

export function cachedPass(key: string): CachedPass | undefined {
  try {
    return JSON.parse(fs.readFileSync(entry(key), "utf8")) as CachedPass;
  } catch {
    return undefined;
  }
}

export function recordPass(key: string, pass: CachedPass): void {
  fs.mkdirSync(path.dirname(entry(key)), { recursive: true });
  const tmp = `${entry(key)}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(pass, null, 2));
  fs.renameSync(tmp, entry(key));
}
