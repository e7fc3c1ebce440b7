import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * The suite gets a temp dir of its own: everything tests and the vmrig runs they start
 * put in TMPDIR goes there and is removed at the end, so a suite never fills /tmp.
 * Before removing it, the teardown checks that vmrig itself left nothing behind
 * (run state dirs, transfer and probe dirs, RAM files in /dev/shm): tests' own fixtures may
 * remain, vmrig's may not.
 */
export default function setup(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-suite-tmp-"));
  process.env.TMPDIR = dir;
  return () => {
    const leaked = fs.readdirSync(dir).filter((e) => /^vmrig-([A-Za-z0-9]{6}|xfer-.*|probe-.*)$/.test(e));
    fs.rmSync(dir, { recursive: true, force: true });
    if (leaked.length > 0) throw new Error(`vmrig left these behind in TMPDIR: ${leaked.join(", ")}`);
    // RAM files of boot snapshots being made never outlive the run that made them. /dev/shm is
    // the host's: count only those whose owner has exited (another vmrig may be running).
    const ownerGone = (e: string) => {
      try {
        process.kill(Number(fs.readFileSync(path.join("/dev/shm", e, "owner.pid"), "utf8")), 0);
        return false;
      } catch {
        return true;
      }
    };
    const shm = fs.existsSync("/dev/shm")
      ? fs.readdirSync("/dev/shm").filter((e) => e.startsWith("vmrig-") && ownerGone(e))
      : [];
    if (shm.length > 0) throw new Error(`vmrig left these behind in /dev/shm: ${shm.join(", ")}`);
  };
}
