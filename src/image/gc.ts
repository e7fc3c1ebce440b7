import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { hostLockHeld, tryHostLock } from "../util/host-lock.js";
import { run } from "../util/proc.js";
import { storeDir } from "./store.js";

export interface StoreGcResult {
  removed: { name: string; kib: number }[];
  kept: number;
  keptKib: number;
}

async function sizeKib(p: string): Promise<number> {
  const r = await run("du", ["-sk", p]).catch(() => undefined);
  return Number(r?.stdout.split(/\s/)[0] ?? 0);
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
  const names = fs.existsSync(dir) ? (await fsp.readdir(dir)).sort() : [];
  for (const name of names) {
    if (name.endsWith(".lock")) {
      // the lock of an entry that is gone, and that nobody is building: removed while held
      const entry = path.join(dir, name.slice(0, -".lock".length));
      if (opts.dryRun || fs.existsSync(entry)) continue;
      const release = await tryHostLock(path.join(dir, name));
      if (release && !fs.existsSync(entry)) fs.rmSync(path.join(dir, name), { force: true });
      release?.();
      continue;
    }
    if (name.includes(".tmp-") || name.includes(".stale-")) continue;
    const entry = path.join(dir, name);
    const st = await fsp.stat(entry).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const kib = await sizeKib(entry);
    // an entry whose lock another process holds is being built: not ours to remove
    const lock = `${entry}.lock`;
    if (live.has(entry) || Date.now() - st.mtimeMs < opts.graceMs || (await hostLockHeld(lock))) {
      out.kept++;
      out.keptKib += kib;
      continue;
    }
    if (!opts.dryRun) {
      await fsp.rm(entry, { recursive: true, force: true });
      fs.rmSync(lock, { force: true });
    }
    out.removed.push({ name, kib });
  }
  return out;
}
