import { createHash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { VmrigError } from "../util/errors.js";
import { tryHostLock } from "../util/host-lock.js";
import { pollFor } from "../util/poll.js";

/** Bumped whenever the way a layer is built changes, so old entries are not reused. */
export const STORE_FORMAT = 3;

export function cacheRoot(): string {
  return (
    process.env.VMRIG_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "vmrig")
  );
}

export function storeDir(): string {
  return path.join(cacheRoot(), "store");
}

/** Stable JSON: object keys sorted, so equal inputs hash equal. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

export function hashInputs(inputs: unknown): string {
  return createHash("sha256")
    .update(canonicalJson({ format: STORE_FORMAT, inputs }))
    .digest("hex")
    .slice(0, 32);
}

export interface StoreEntry {
  /** the entry's directory: `<store>/<hash>-<name>` */
  path: string;
  hash: string;
  /** true if this call built it, false if it was already there */
  built: boolean;
}

/** How long a build waits for another process building the same entry (a base layer takes minutes). */
const LOCK_WAIT_S = 3600;

/**
 * Run `fn` holding the entry's lock: a flock(2) on `lockPath` (util/host-lock.ts), which the
 * kernel drops when its holder lets go or dies, whatever PID namespace it is in. So a
 * crashed build never blocks the store, a live one in another container on the same cache
 * is never taken over, and no two waiters can both take a stale lock. The file stays: it
 * is only the thing locked.
 */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>, onWait?: () => void): Promise<T> {
  let waited = false;
  const release = await pollFor(
    LOCK_WAIT_S,
    async () => {
      const r = await tryHostLock(lockPath);
      if (!r && !waited) {
        waited = true;
        onWait?.();
      }
      return r;
    },
    () =>
      new VmrigError(
        `waited ${LOCK_WAIT_S / 60} min for ${path.basename(lockPath)}: another vmrig is building that store entry`,
        {
          hint: "look for a stuck build (`pgrep -a mmdebstrap`, `pgrep -a apt-get`); a killed one lets go of its lock at once",
        },
      ),
  );
  try {
    return await fn();
  } finally {
    await release();
  }
}

/** How a build in progress is named to the user (`what`: "the Debian trixie base layer"). */
export interface BuildNotes {
  what: string;
  progress: (line: string) => void;
}

/**
 * Get the entry for `inputs`, building it with `build(tmpDir)` if it is missing or
 * damaged. Builds go to a temporary directory renamed into place, so a store path either
 * is complete or does not exist; concurrent runs wait on a per-entry lock.
 */
export async function ensureEntry(
  name: string,
  inputs: unknown,
  build: (tmpDir: string) => Promise<void>,
  notes?: BuildNotes,
): Promise<StoreEntry> {
  const hash = hashInputs(inputs);
  const dir = storeDir();
  const final = path.join(dir, `${hash}-${name}`);
  if (used(final) && !entryDamage(final)) return { path: final, hash, built: false };
  await fsp.mkdir(dir, { recursive: true });
  return withLock(
    `${final}.lock`,
    async () => {
      if (fs.existsSync(final)) {
        const damage = entryDamage(final);
        if (!damage) return { path: final, hash, built: false };
        notes?.progress(`${notes.what} in the store is damaged (${damage}): building it again`);
        discardEntry(final);
      }
      const tmp = `${final}.tmp-${process.pid}`;
      await fsp.rm(tmp, { recursive: true, force: true });
      await fsp.mkdir(tmp);
      try {
        await build(tmp);
        await fsp.writeFile(path.join(tmp, ".inputs.json"), JSON.stringify(inputs, null, 2));
        await fsp.writeFile(path.join(tmp, MANIFEST), JSON.stringify(fileSizes(tmp)));
        await fsp.rename(tmp, final);
      } catch (e) {
        await fsp.rm(tmp, { recursive: true, force: true });
        throw e;
      }
      return { path: final, hash, built: true };
    },
    notes && (() => notes.progress(`waiting for another vmrig run that is building ${notes.what}`)),
  );
}

/**
 * Each built entry's top-level files and their sizes, checked whenever the entry is used:
 * a file cut short (a disk that filled while it was written or copied, a partial restore
 * of a cache) is found before a machine boots from it, and the entry is built again. The
 * contents are not hashed: that would read gigabytes on every use.
 */
const MANIFEST = ".files.json";

function fileSizes(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of fs.readdirSync(dir, { withFileTypes: true }))
    if (e.isFile() && !e.name.startsWith(".")) out[e.name] = fs.statSync(path.join(dir, e.name)).size;
  return out;
}

/** What is wrong with a published entry's files, if anything (an entry from before manifests is trusted). */
export function entryDamage(entry: string): string | undefined {
  let want: Record<string, number>;
  try {
    want = JSON.parse(fs.readFileSync(path.join(entry, MANIFEST), "utf8")) as Record<string, number>;
  } catch {
    return undefined;
  }
  for (const [name, bytes] of Object.entries(want)) {
    const st = fs.statSync(path.join(entry, name), { throwIfNoEntry: false });
    if (!st) return `${name} is missing`;
    if (st.size !== bytes) return `${name} is ${st.size} bytes, ${bytes} when built`;
  }
  return undefined;
}

/**
 * Take an entry out of the store (damaged, or a snapshot that no longer fits): renamed
 * aside first (atomic), so a run looking for it now finds nothing rather than half an
 * entry, then removed.
 */
export function discardEntry(entry: string): void {
  const aside = `${entry}.stale-${process.pid}-${Date.now()}`;
  try {
    fs.renameSync(entry, aside);
  } catch {
    return; // another run removed it already
  }
  fs.rmSync(aside, { recursive: true, force: true });
}

/**
 * The entry `<store>/<hash>-<name>`, made by `build(tmpDir)` unless it exists, or
 * `undefined` at once if another live process is making it: for entries that are worth
 * having but not worth waiting for (boot snapshots). Published by rename, as every entry.
 */
export async function createEntryUnlessBusy(
  hash: string,
  name: string,
  build: (tmpDir: string) => Promise<void>,
): Promise<string | undefined> {
  const dir = storeDir();
  const final = path.join(dir, `${hash}-${name}`);
  if (used(final)) return final;
  await fsp.mkdir(dir, { recursive: true });
  const release = await tryHostLock(`${final}.lock`);
  if (!release) return undefined;
  try {
    if (fs.existsSync(final)) return final;
    const tmp = `${final}.tmp-${process.pid}`;
    await fsp.rm(tmp, { recursive: true, force: true });
    await fsp.mkdir(tmp);
    try {
      await build(tmp);
      await fsp.rename(tmp, final);
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return final;
  } finally {
    await release();
  }
}

/** `<store>/<hash>-<name>` if it exists. */
export function findEntry(hash: string, name: string): string | undefined {
  const p = path.join(storeDir(), `${hash}-${name}`);
  return used(p) ? p : undefined;
}

/**
 * Does the entry exist? If so, it is being used now: its directory's modification time
 * says when it was last used (a published entry's contents never change), which is what
 * the store's budget removes the least recently used entries by (image/gc.ts).
 */
function used(entry: string): boolean {
  try {
    const now = new Date();
    fs.utimesSync(entry, now, now);
    return true;
  } catch {
    return false;
  }
}
