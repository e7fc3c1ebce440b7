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
    release();
  }
}

/**
 * Get the entry for `inputs`, building it with `build(tmpDir)` if it is missing.
 * Builds go to a temporary directory renamed into place, so a store path either
 * is complete or does not exist; concurrent runs wait on a per-entry lock.
 */
export async function ensureEntry(
  name: string,
  inputs: unknown,
  build: (tmpDir: string) => Promise<void>,
  onWait?: () => void,
): Promise<StoreEntry> {
  const hash = hashInputs(inputs);
  const dir = storeDir();
  const final = path.join(dir, `${hash}-${name}`);
  if (used(final)) return { path: final, hash, built: false };
  await fsp.mkdir(dir, { recursive: true });
  return withLock(
    `${final}.lock`,
    async () => {
      if (fs.existsSync(final)) return { path: final, hash, built: false };
      const tmp = `${final}.tmp-${process.pid}`;
      await fsp.rm(tmp, { recursive: true, force: true });
      await fsp.mkdir(tmp);
      try {
        await build(tmp);
        await fsp.writeFile(path.join(tmp, ".inputs.json"), JSON.stringify(inputs, null, 2));
        await fsp.rename(tmp, final);
      } catch (e) {
        await fsp.rm(tmp, { recursive: true, force: true });
        throw e;
      }
      return { path: final, hash, built: true };
    },
    onWait,
  );
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
    release();
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
