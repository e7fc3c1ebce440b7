import fs from "node:fs";
import path from "node:path";
import { collectStore, enforceBudget, measureStore, storeBudget, type BudgetResult } from "../image/gc.js";
import { readJson, readRoots, removeRoot } from "../image/roots.js";
import { cacheRoot } from "../image/store.js";
import type { CachedPass } from "./cache.js";

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
  for (const { root, file } of readRoots()) {
    if (!root || !fs.existsSync(root.file)) {
      droppedRoots.push(root?.file ?? file);
      if (!dryRun) removeRoot(file);
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

/** A size in KiB as vmrig prints store sizes. */
export const gib = (kib: number) => `${(kib / 1024 / 1024).toFixed(1)} GiB`;

export interface StoreStatus {
  totalKib: number;
  entries: number;
  budget: { kib: number; from: string };
}

/** The store's size and budget, for `vmrig doctor` and `vmrig gc --dry-run`. */
export async function storeStatus(): Promise<StoreStatus> {
  const store = await measureStore();
  return { totalKib: store.totalKib, entries: store.entries.length, budget: await storeBudget(store.totalKib) };
}

/**
 * After a run: keep the store within its budget (image/gc.ts), least recently used first.
 * Says what it removed; a store that cannot fit (everything in it used in the last hour)
 * is said too, with what to do. Never fails the run. Resolves to the store's size and
 * budget afterwards (undefined if it could not tell).
 */
export async function keepStoreInBudget(print: (l: string) => void): Promise<StoreStatus | undefined> {
  try {
    const store = await measureStore();
    const budget = await storeBudget(store.totalKib);
    const r: BudgetResult = await enforceBudget(budget.kib, store);
    if (r.removed.length)
      print(
        `store: ${gib(r.beforeKib)} was over its budget of ${gib(r.budgetKib)}: removed the ${r.removed.length} least recently used entries (${gib(r.beforeKib - r.afterKib)}); they are rebuilt when a test needs them again`,
      );
    if (r.afterKib > r.budgetKib)
      print(
        `store: ${gib(r.afterKib)}, over its budget of ${gib(r.budgetKib)}, and every entry left was used in the last hour or is in use: raise VMRIG_STORE_BUDGET, or free space on the disk`,
      );
    return { totalKib: r.afterKib, entries: store.entries.length - r.removed.length, budget };
  } catch (e) {
    print(`store: could not check its size against its budget: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}
