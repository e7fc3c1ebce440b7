import { createHash } from "node:crypto";
import { driveIds, qemuArgs, type Layout, type VmSpec } from "./qemu-args.js";
import type { QemuInfo } from "./qemu-info.js";

/** Bumped when what a boot snapshot holds, or how it is restored, changes. */
export const SNAPSHOT_FORMAT = 2;

/**
 * Bumped when what a desktop's boot snapshot holds changes, for desktops alone: 1 waits
 * until the session has drawn its screen before saving (restores used to start black); 2 also
 * until the guest is quiet (restores used to land in the session's start-up).
 */
const DESKTOP_SNAPSHOT_FORMAT = 2;

/** What a saved boot is, next to its files (`ram`, `state`, one `<drive>.qcow2` per drive, `console.log`). */
export interface SnapshotMeta {
  /** false: this configuration's isolated boot did not end clean, so it is booted every time */
  ok: boolean;
  /** why not, for the log */
  reason?: string;
  machine: string;
  qemu: string;
  bootId?: string;
  /** how long the boot that was saved took, ms */
  bootMs?: number;
  createdAt: string;
  /** the saved files' sizes (and the small device state's hash), to tell a damaged snapshot before loading it */
  files?: Record<string, { bytes: number; sha256?: string }>;
}

export interface SavedBoot {
  dir: string;
  meta: SnapshotMeta;
}

/**
 * Where boot snapshots live: the driver implements it over the image store (content
 * addressed, locked per entry). A lower layer declares what it needs.
 */
export interface SnapshotStore {
  find(key: string, machine: string): SavedBoot | undefined;
  /**
   * Make the entry with `save(dir)` unless another process is making it right now
   * (then `undefined`: boot without one). A thrown error leaves no entry behind.
   */
  create(key: string, machine: string, save: (dir: string) => Promise<SnapshotMeta>): Promise<SavedBoot | undefined>;
  /** Remove a snapshot found damaged or unloadable, so the next start saves a new one. */
  discard(saved: SavedBoot): void;
  /** Count one more isolated first boot of this configuration that ran out of time; returns the count so far. */
  strike(key: string, machine: string): number;
}

/**
 * The key of a machine's boot snapshot: everything the saved state depends on. The
 * command line covers kernel, initrd (store paths are content hashes), CPU model and
 * flags, -smp, -m, the memory layout, every device with its MAC and the kernel command
 * line; per-process paths (sockets, overlays, the RAM file) are replaced by placeholders,
 * since a state loads with other paths. The disk image is not on the command line (the
 * overlay's backing file is), so it and the blank disks' sizes are added: without them
 * two machines of one name and index in different tests would share a snapshot.
 */
export function snapshotKey(spec: VmSpec, info: QemuInfo): string {
  const layout: Layout = {
    sockets: { cmd: "@cmd", err: "@err", ctl: "@ctl", xfer: "@xfer", shell: "@shell", con: "@con", qmp: "@qmp" },
    drives: Object.fromEntries(driveIds(spec).map((d) => [d, `@${d}`])),
    ram: { path: "@ram", share: true },
  };
  const args = qemuArgs({ ...spec, stateDir: "@state" }, layout, info.machineType).map((a) =>
    a.split(spec.stateDir).join("@state"),
  );
  return createHash("sha256")
    .update(
      JSON.stringify({
        format: SNAPSHOT_FORMAT,
        desktop: spec.desktopInput ? DESKTOP_SNAPSHOT_FORMAT : undefined,
        qemu: info.version,
        args,
        disk: spec.disk,
        emptyDisks: spec.emptyDisks ?? [],
      }),
    )
    .digest("hex")
    .slice(0, 32);
}
