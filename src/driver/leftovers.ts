import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { storeDir } from "../image/store.js";
import { pidAlive as alive } from "../util/proc.js";

const OWNER = "owner.pid";

/** Mark a run's temporary directory as ours, so a later run can tell if we died. */
export function claim(dir: string): void {
  fs.writeFileSync(path.join(dir, OWNER), String(process.pid));
}

/**
 * Remove what runs that were killed (SIGKILL, power loss) left behind: their
 * temporary directories and half-built store entries. Their QEMU and switch
 * processes died with them (parent-death signal). Only directories whose
 * owner process is gone are touched.
 */
export function sweepLeftovers(): string[] {
  const removed: string[] = [];
  const tmp = os.tmpdir();
  for (const e of fs.readdirSync(tmp)) {
    if (!/^vmrig-[A-Za-z0-9]{6}$/.test(e)) continue;
    const dir = path.join(tmp, e);
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
  const store = storeDir();
  if (fs.existsSync(store)) {
    for (const e of fs.readdirSync(store)) {
      const m = /\.tmp-(\d+)$/.exec(e);
      if (m && !alive(Number(m[1]))) {
        fs.rmSync(path.join(store, e), { recursive: true, force: true });
        removed.push(path.join(store, e));
      }
    }
  }
  return removed;
}
