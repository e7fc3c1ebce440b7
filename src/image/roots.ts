import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { NodeImage } from "./image.js";
import { cacheRoot } from "./store.js";

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

export function readJson<T>(p: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(p, "utf8")) as T;
  } catch {
    return undefined;
  }
}

/** Every root in the cache, parsed (undefined when unreadable), with its file name. */
export function readRoots(): { file: string; root: Root | undefined }[] {
  const dir = rootsDir();
  return (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".json")) : []).map((file) => ({
    file,
    root: readJson<Root>(path.join(dir, file)),
  }));
}

export function removeRoot(file: string): void {
  fs.rmSync(path.join(rootsDir(), file), { force: true });
}
