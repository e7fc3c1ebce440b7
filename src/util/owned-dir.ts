import fs from "node:fs";
import path from "node:path";

export const OWNER_FILE = "owner.pid";

/** Mark a temporary directory as this process's, so a later run can tell if its owner died (session/leftovers.ts sweeps them). */
export function claim(dir: string): void {
  fs.writeFileSync(path.join(dir, OWNER_FILE), String(process.pid));
}

/** A new temporary directory `<parent>/vmrig-XXXXXX`, claimed by this process. */
export function ownedTempDir(parent: string): string {
  const dir = fs.mkdtempSync(path.join(parent, "vmrig-"));
  claim(dir);
  return dir;
}
