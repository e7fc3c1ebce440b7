import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { collectStore } from "../image/gc.js";
import type { NodeImage } from "../image/image.js";
import { cacheRoot } from "../image/store.js";
import type { CachedPass } from "./cache.js";

/**
 * GC roots, as Nix keeps them: each test file's latest build names the store
 * entries it uses. `vmrig gc` keeps those and removes the rest.
 */
interface Root {
  file: string;
  test: string;
  builtAt: string;
  entries: string[];
}

const rootsDir = () => path.join(cacheRoot(), "roots");
const rootPath = (file: string) =>
  path.join(rootsDir(), `${createHash("sha256").update(path.resolve(file)).digest("hex").slice(0, 24)}.json`);

export function recordRoot(file: string, test: string, images: Record<string, NodeImage>): void {
  const root: Root = {
    file: path.resolve(file),
    test,
    builtAt: new Date().toISOString(),
    entries: [...new Set(Object.values(images).flatMap((i) => i.entries))].sort(),
  };
  fs.mkdirSync(rootsDir(), { recursive: true });
  const tmp = `${rootPath(file)}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(root, null, 2));
  fs.renameSync(tmp, rootPath(file));
}

/** Add store entries made while a test ran (its boot snapshots) to its root. */
export function addToRoot(file: string, entries: string[]): void {
  const root = readJson<Root>(rootPath(file));
  if (!root) return;
  const all = [...new Set([...root.entries, ...entries])].sort();
  if (all.length === root.entries.length) return;
  const tmp = `${rootPath(file)}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify({ ...root, entries: all }, null, 2));
  fs.renameSync(tmp, rootPath(file));
}

function readJson<T>(p: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(p, "utf8")) as T;
  } catch {
    return undefined;
  }
}

export interface GcReport {
  removedEntries: { name: string; kib: number }[];
  keptEntries: number;
  keptKib: number;
  tests: number;
  droppedRoots: string[];
  removedResults: number;
  /** outputs of failed builds (`<cache>/logs/`) older than a week */
  removedLogs: number;
}

const LOG_KEEP_MS = 7 * 24 * 3600_000;

export async function gc(opts: { graceMs?: number; dryRun?: boolean } = {}): Promise<GcReport> {
  const dryRun = opts.dryRun ?? false;
  const live = new Set<string>();
  const droppedRoots: string[] = [];
  let tests = 0;
  const rootFiles = fs.existsSync(rootsDir()) ? fs.readdirSync(rootsDir()).filter((f) => f.endsWith(".json")) : [];
  for (const f of rootFiles) {
    const root = readJson<Root>(path.join(rootsDir(), f));
    if (!root || !fs.existsSync(root.file)) {
      droppedRoots.push(root?.file ?? f);
      if (!dryRun) fs.rmSync(path.join(rootsDir(), f), { force: true });
      continue;
    }
    tests++;
    for (const e of root.entries) live.add(e);
  }
  const store = await collectStore(live, { graceMs: opts.graceMs ?? 3600_000, dryRun });

  // Cached passes: drop those of deleted files and all but the newest of each file.
  const resultsDir = path.join(cacheRoot(), "results");
  const records = (fs.existsSync(resultsDir) ? fs.readdirSync(resultsDir) : [])
    .filter((f) => f.endsWith(".json"))
    .map((f) => ({ path: path.join(resultsDir, f), pass: readJson<CachedPass>(path.join(resultsDir, f)) }));
  const newest = new Map<string, string>();
  for (const r of records) {
    if (!r.pass) continue;
    const prev = newest.get(r.pass.file);
    if (prev === undefined || r.pass.passedAt > prev) newest.set(r.pass.file, r.pass.passedAt);
  }
  let removedResults = 0;
  for (const r of records) {
    const stale = !r.pass || !fs.existsSync(r.pass.file) || newest.get(r.pass.file) !== r.pass.passedAt;
    if (!stale) continue;
    removedResults++;
    if (!dryRun) fs.rmSync(r.path, { force: true });
  }
  const logsDir = path.join(cacheRoot(), "logs");
  let removedLogs = 0;
  for (const f of fs.existsSync(logsDir) ? fs.readdirSync(logsDir) : []) {
    const p = path.join(logsDir, f);
    if (Date.now() - fs.statSync(p).mtimeMs < LOG_KEEP_MS) continue;
    removedLogs++;
    if (!dryRun) fs.rmSync(p, { force: true });
  }
  return {
    removedEntries: store.removed,
    keptEntries: store.kept,
    keptKib: store.keptKib,
    tests,
    droppedRoots,
    removedResults,
    removedLogs,
  };
}
