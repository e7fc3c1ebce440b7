import fs from "node:fs";
import path from "node:path";
import { cacheRoot, createEntryUnlessBusy, discardEntry, findEntry } from "../image/store.js";
import type { SavedBoot, SnapshotMeta, SnapshotStore } from "../vm/snapshot.js";

const META = "meta.json";

/**
 * Boot snapshots as store entries `<key>-snapshot-<machine>`: content addressed like
 * images, published by rename, made by one run at a time (others boot meanwhile), and
 * recorded in the test's GC root through `onEntry` so that `vmrig gc` keeps them.
 */
export function storeSnapshots(onEntry: (entryPath: string) => void): SnapshotStore {
  const read = (dir: string): SavedBoot | undefined => {
    try {
      return { dir, meta: JSON.parse(fs.readFileSync(path.join(dir, META), "utf8")) as SnapshotMeta };
    } catch {
      return undefined;
    }
  };
  const strikes = (key: string, machine: string) => path.join(cacheRoot(), "snapshot-strikes", `${key}-${machine}`);
  return {
    strike(key, machine) {
      const file = strikes(key, machine);
      const n = (Number.parseInt(fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "0", 10) || 0) + 1;
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, String(n));
      return n;
    },
    find(key, machine) {
      const dir = findEntry(key, `snapshot-${machine}`);
      const saved = dir ? read(dir) : undefined;
      if (saved) onEntry(saved.dir);
      return saved;
    },
    discard(saved) {
      discardEntry(saved.dir);
    },
    async create(key, machine, save) {
      const dir = await createEntryUnlessBusy(key, `snapshot-${machine}`, async (tmp) => {
        const meta = await save(tmp);
        fs.writeFileSync(path.join(tmp, META), JSON.stringify(meta, null, 2));
      });
      const saved = dir ? read(dir) : undefined;
      if (saved) onEntry(saved.dir);
      return saved;
    },
  };
}
