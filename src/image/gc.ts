import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { hostLockHeld, tryHostLock } from "../util/host-lock.js";
import { run } from "../util/proc.js";
import { VmrigError } from "../util/errors.js";
import { entriesInUse } from "./in-use.js";
import { cacheRoot, storeDir } from "./store.js";

export interface StoreGcResult {
  removed: { name: string; kib: number }[];
  kept: number;
  keptKib: number;
}

/**
 * An entry's size in KiB. A published entry never changes, so its size is measured once
 * (`du`) and remembered in `<cache>/store-sizes.json`: a budget check after every run
 * costs a directory listing, not a walk of every file.
 */
async function sizeKib(entry: string, sizes: Record<string, number>): Promise<number> {
  const name = path.basename(entry);
  const known = sizes[name];
  if (known !== undefined) return known;
  const r = await run("du", ["-sk", entry]).catch(() => undefined);
  const kib = Number(r?.stdout.split(/\s/)[0] ?? 0);
  sizes[name] = kib;
  return kib;
}

const sizesFile = () => path.join(cacheRoot(), "store-sizes.json");

function readSizes(): Record<string, number> {
  try {
    return JSON.parse(fs.readFileSync(sizesFile(), "utf8")) as Record<string, number>;
  } catch {
    return {};
  }
}

/** Remember the sizes of the entries that still exist. */
function writeSizes(sizes: Record<string, number>, names: Set<string>): void {
  const kept = Object.fromEntries(Object.entries(sizes).filter(([n]) => names.has(n)));
  fs.mkdirSync(cacheRoot(), { recursive: true });
  const tmp = `${sizesFile()}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(kept));
  fs.renameSync(tmp, sizesFile());
}

/** A published entry of the store, with when it was last used and its size. */
export interface MeasuredEntry {
  name: string;
  path: string;
  usedMs: number;
  kib: number;
}

/**
 * The store's published entries (not locks, half-built or stale folders), each with when
 * it was last used and its size, and their total: one listing for whatever asks (the
 * budget, `vmrig gc`, `vmrig doctor`).
 */
export async function measureStore(): Promise<{ entries: MeasuredEntry[]; totalKib: number }> {
  const dir = storeDir();
  const sizes = readSizes();
  const entries: MeasuredEntry[] = [];
  for (const name of fs.existsSync(dir) ? (await fsp.readdir(dir)).sort() : []) {
    if (name.endsWith(".lock") || name.includes(".tmp-") || name.includes(".stale-")) continue;
    const p = path.join(dir, name);
    const st = await fsp.stat(p).catch(() => undefined);
    if (st?.isDirectory()) entries.push({ name, path: p, usedMs: st.mtimeMs, kib: await sizeKib(p, sizes) });
  }
  writeSizes(sizes, new Set(entries.map((e) => e.name)));
  return { entries, totalKib: entries.reduce((a, e) => a + e.kib, 0) };
}

/** Forget the sizes of entries that were removed. */
function forgetSizes(removed: { name: string }[]): void {
  if (!removed.length) return;
  const gone = new Set(removed.map((r) => r.name));
  const sizes = readSizes();
  writeSizes(sizes, new Set(Object.keys(sizes).filter((n) => !gone.has(n))));
}

/** Remove a published entry, and its lock file: only while holding that lock (nobody is making it). */
async function removeEntry(entry: string): Promise<boolean> {
  const release = await tryHostLock(`${entry}.lock`);
  if (!release) return false;
  try {
    await fsp.rm(entry, { recursive: true, force: true });
    fs.rmSync(`${entry}.lock`, { force: true });
  } finally {
    await release();
  }
  return true;
}

const GIB = 1024 * 1024;

/**
 * The store's size budget in KiB: `VMRIG_STORE_BUDGET` (`40G`, `500M`, or KiB with a `K`),
 * else all the space the cache's file system has for the store (its size now plus the free
 * space) but a reserve left free: a tenth of that, and at least 10 GiB, for the runs' own
 * disks and RAM files and for everything else on the disk. So the store is trimmed when the
 * disk would fill, not before: a smaller default would evict, in a suite run, the entries of
 * the tests that have not run yet, and rebuild them every run.
 */
/** The default budget for `roomKib` (the store's size plus the free space): a tenth, at least 10 GiB, left free; never under 1 GiB. */
export function defaultBudgetKib(roomKib: number): number {
  return Math.max(GIB, Math.round(roomKib - Math.max(10 * GIB, roomKib / 10)));
}

export async function storeBudget(storeKib?: number): Promise<{ kib: number; from: string }> {
  const env = process.env.VMRIG_STORE_BUDGET;
  if (env !== undefined && env !== "") {
    const m = /^(\d+(?:\.\d+)?)\s*([KMGT])i?B?$/i.exec(env.trim());
    if (!m)
      throw new VmrigError(`VMRIG_STORE_BUDGET=${env}: not a size`, {
        hint: "give a size with its unit: VMRIG_STORE_BUDGET=40G (or 500M, 2T)",
      });
    const unit = { K: 1, M: 1024, G: GIB, T: 1024 * GIB }[m[2]!.toUpperCase() as "K" | "M" | "G" | "T"];
    return { kib: Math.round(Number(m[1]) * unit), from: "VMRIG_STORE_BUDGET" };
  }
  fs.mkdirSync(storeDir(), { recursive: true });
  const fsStat = await fsp.statfs(storeDir());
  const freeKib = (fsStat.bavail * fsStat.bsize) / 1024;
  const room = (storeKib ?? (await measureStore()).totalKib) + freeKib;
  return {
    kib: defaultBudgetKib(room),
    from: "the store's size plus the free space on its disk, less 10 % and at least 10 GiB left free (VMRIG_STORE_BUDGET overrides it)",
  };
}

export interface BudgetResult {
  budgetKib: number;
  /** the store's size before and after */
  beforeKib: number;
  afterKib: number;
  removed: { name: string; kib: number }[];
}

/** Entries used this recently are never removed for the budget. */
const BUDGET_GRACE_MS = 60 * 60_000;

/**
 * Keep the store within `budgetKib`: remove the least recently used entries until it fits.
 * Never an entry a running test holds (image/in-use.ts), one being made (its lock is held),
 * or one used in the last hour (a run that is still building may be about to hold it).
 */
export async function enforceBudget(
  budgetKib: number,
  store?: { entries: MeasuredEntry[]; totalKib: number },
): Promise<BudgetResult> {
  store ??= await measureStore();
  const out: BudgetResult = { budgetKib, beforeKib: store.totalKib, afterKib: store.totalKib, removed: [] };
  if (store.totalKib <= budgetKib) return out;
  const inUse = await entriesInUse();
  for (const e of [...store.entries].sort((a, b) => a.usedMs - b.usedMs)) {
    if (out.afterKib <= budgetKib) break;
    if (inUse.has(e.path) || Date.now() - e.usedMs < BUDGET_GRACE_MS) continue;
    if (!(await removeEntry(e.path))) continue;
    out.afterKib -= e.kib;
    out.removed.push({ name: e.name, kib: e.kib });
  }
  forgetSizes(out.removed);
  return out;
}

/**
 * Remove every store entry that is not `live`. Entries younger than `graceMs`
 * and entries being built (a lock or a temporary directory) are left alone:
 * another vmrig run may be about to use them.
 */
export async function collectStore(
  live: Set<string>,
  opts: { graceMs: number; dryRun: boolean },
): Promise<StoreGcResult> {
  const dir = storeDir();
  const out: StoreGcResult = { removed: [], kept: 0, keptKib: 0 };
  if (!opts.dryRun) await removeOrphanLocks(dir);
  const inUse = await entriesInUse();
  for (const e of (await measureStore()).entries) {
    const keep =
      live.has(e.path) ||
      inUse.has(e.path) ||
      Date.now() - e.usedMs < opts.graceMs ||
      // an entry whose lock another process holds is being built: not ours to remove
      (opts.dryRun ? await hostLockHeld(`${e.path}.lock`) : !(await removeEntry(e.path)));
    if (keep) {
      out.kept++;
      out.keptKib += e.kib;
    } else out.removed.push({ name: e.name, kib: e.kib });
  }
  if (!opts.dryRun) forgetSizes(out.removed);
  return out;
}

/** The locks of entries that are gone and that nobody is building: removed while held. */
async function removeOrphanLocks(dir: string): Promise<void> {
  for (const name of fs.existsSync(dir) ? await fsp.readdir(dir) : []) {
    if (!name.endsWith(".lock")) continue;
    const entry = path.join(dir, name.slice(0, -".lock".length));
    if (fs.existsSync(entry)) continue;
    const release = await tryHostLock(path.join(dir, name));
    if (release && !fs.existsSync(entry)) fs.rmSync(path.join(dir, name), { force: true });
    await release?.();
  }
}
