import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { tryHostLock } from "../util/host-lock.js";
import { cacheRoot } from "./store.js";

/**
 * Which store entries running tests use, so that `vmrig gc` and the store's budget never
 * remove one under a running machine. Each holder (one per set of started machines) writes
 * `<cache>/in-use/<id>.json` and holds a flock on `<id>.lock` for as long as it runs: a
 * holder killed with SIGKILL lets go of its lock at once, and its list then counts for
 * nothing. Nothing judges a holder by its PID, so this holds across PID namespaces.
 */
export interface EntryHold {
  /** more entries this holder uses (boot snapshots made while it runs) */
  add(entries: readonly string[]): void;
  release(): void;
}

const inUseDir = () => path.join(cacheRoot(), "in-use");

export async function holdEntries(entries: readonly string[]): Promise<EntryHold> {
  const dir = inUseDir();
  fs.mkdirSync(dir, { recursive: true });
  const id = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const list = path.join(dir, `${id}.json`);
  const lock = path.join(dir, `${id}.lock`);
  const release = await tryHostLock(lock);
  if (!release) throw new Error(`${lock} is held by someone else, and its name is new`);
  const held = new Set(entries);
  const write = () => {
    fs.writeFileSync(`${list}.tmp`, JSON.stringify([...held].sort(), null, 1));
    fs.renameSync(`${list}.tmp`, list);
  };
  write();
  let released = false;
  return {
    add(more) {
      if (released) return;
      const before = held.size;
      for (const e of more) held.add(e);
      if (held.size !== before) write();
    },
    release() {
      if (released) return;
      released = true;
      fs.rmSync(list, { force: true });
      void release();
      fs.rmSync(lock, { force: true });
    },
  };
}

/** Every entry some live holder uses. The lists of holders that are gone are removed. */
export async function entriesInUse(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const list of (await sortHolders()).live) {
    try {
      for (const e of JSON.parse(fs.readFileSync(list, "utf8")) as string[]) out.add(e);
    } catch {
      // being rewritten (rename is atomic, so only a list that just went away): nothing held
    }
  }
  return out;
}

/**
 * The holders' lists, the live ones apart from those of holders that are gone (a SIGKILLed
 * run's): those are removed here and returned as `forgotten`.
 */
export async function sortHolders(): Promise<{ live: string[]; forgotten: string[] }> {
  const dir = inUseDir();
  const live: string[] = [];
  const forgotten: string[] = [];
  for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (!f.endsWith(".json")) continue;
    const list = path.join(dir, f);
    const lock = list.replace(/\.json$/, ".lock");
    // a holder that is gone lets its lock go: take it (so a holder starting right now keeps its own) and forget it
    const gone = await tryHostLock(lock);
    if (!gone) {
      live.push(list);
      continue;
    }
    fs.rmSync(list, { force: true });
    fs.rmSync(lock, { force: true });
    await gone();
    forgotten.push(list);
  }
  return { live, forgotten };
}
