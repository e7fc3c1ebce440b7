import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sortHolders } from "../image/in-use.js";
import { storeDir } from "../image/store.js";
import { OWNER_FILE as OWNER } from "../util/owned-dir.js";
import { tryHostLock } from "../util/host-lock.js";
import { pidAlive as alive } from "../util/proc.js";

let swept = false;

/** Sweep once per process, before its first machines start (`startMachines`). */
export async function sweepLeftoversOnce(print: (line: string) => void): Promise<void> {
  if (swept) return;
  swept = true;
  for (const d of await sweepLeftovers()) print(`vmrig: removed ${d}, left behind by a vmrig run that was killed`);
}

/**
 * Remove what runs that were killed (SIGKILL, power loss) left behind: their
 * temporary directories, RAM files, half-built store entries and their lists of the store
 * entries they held. Their QEMU and switch
 * processes died with them (parent-death signal). Only directories whose
 * owner process is gone are touched.
 */
export async function sweepLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  // run directories in TMPDIR, and the RAM files of boot snapshots being made in /dev/shm
  const candidates = [os.tmpdir(), "/dev/shm"].flatMap((parent) =>
    (fs.existsSync(parent) ? fs.readdirSync(parent) : [])
      .filter((e) => /^vmrig-[A-Za-z0-9]{6}$/.test(e))
      .map((e) => path.join(parent, e)),
  );
  for (const dir of candidates) {
    let owner: number;
    try {
      owner = Number(fs.readFileSync(path.join(dir, OWNER), "utf8"));
    } catch {
      continue; // not a run directory, or not ours to judge
    }
    if (owner > 0 && !alive(owner)) {
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    }
  }
  // A half-built store entry is abandoned when nobody holds its entry's lock (a flock: its
  // builder let go or died, in whatever PID namespace it ran); removed while we hold it.
  const store = storeDir();
  for (const e of fs.existsSync(store) ? fs.readdirSync(store) : []) {
    const m = /^(.*)\.tmp-\d+$/.exec(e);
    if (!m) continue;
    const release = await tryHostLock(path.join(store, `${m[1]}.lock`));
    if (!release) continue;
    try {
      fs.rmSync(path.join(store, e), { recursive: true, force: true });
      removed.push(path.join(store, e));
    } finally {
      await release();
    }
  }
  // the store entries a killed run held (its in-use list) are free again
  removed.push(...(await sortHolders()).forgotten);
  return removed;
}
