import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { coldBoot, createDisks, secs } from "./boot.js";
import type { MachineCore } from "./core.js";
import { histogram, parsePnm, type Gray } from "./ocr.js";
import { launchQemu, resumeRestored, type QemuVm } from "../vm/qemu.js";
import { driveIds, socketPaths, type Layout, type VmSpec } from "../vm/qemu-args.js";
import { qemuInfo } from "../vm/qemu-info.js";
import { snapshotKey, type SavedBoot, type SnapshotMeta, type SnapshotStore } from "../vm/snapshot.js";
import { errorMessage } from "../util/errors.js";
import { ownedTempDir } from "../util/owned-dir.js";
import { poll } from "../util/poll.js";
import { run } from "../util/proc.js";

// Boot snapshots (SPEC §7): the saved first boot of a machine configuration, and its restores.

/**
 * How long an isolated first boot may take to finish before it counts as waiting for its
 * peers. A desktop's boot ends once its session has drawn (GNOME's shell: ~2 min under TCG).
 */
const isolatedBootS = (spec: VmSpec): number => (spec.desktopInput ? 300 : 90);

/**
 * An isolated first boot ran out of time. Once may be a busy host: nothing is recorded and
 * the next run tries again. The second time it is taken as a boot that waits for its peers.
 */
const STRIKES = 2;

class IsolatedBootTimedOut extends Error {}

export async function startFromSnapshot(
  m: MachineCore,
  spec: VmSpec,
  location: string | undefined,
): Promise<QemuVm | undefined> {
  const prepared = m.prepared;
  m.prepared = undefined;
  const early = await prepared;
  if (early) {
    try {
      return await resumed(early);
    } catch (e) {
      if (m.closing.signal.aborted) throw e;
      m.log.log(`could not resume the prepared restore (${errorMessage(e).split("\n")[0]}); booting instead`, m.name);
      await early.kill();
      m.disks = undefined;
      return undefined;
    }
  }
  const store = m.ctx.snapshots!;
  const key = snapshotKey(spec, await qemuInfo());
  let saved = findIntact(m, store, key, spec.disk);
  if (!saved) {
    try {
      saved = await store.create(key, m.name, (dir) =>
        saveBoot(m, spec, dir, location, () => store.strike(key, m.name)),
      );
    } catch (e) {
      if (!(e instanceof IsolatedBootTimedOut)) throw e;
      m.log.log(`no boot snapshot this time: ${e.message}`, m.name);
      return undefined;
    }
    if (!saved) {
      m.log.log("booting: another run is saving this machine's boot snapshot right now", m.name);
      return undefined;
    }
  }
  if (!saved.meta.ok) {
    m.log.log(`booting, not restoring: ${saved.meta.reason ?? "no boot snapshot"}`, m.name);
    return undefined;
  }
  try {
    return await resumed(await restoreBoot(m, spec, saved));
  } catch (e) {
    if (m.closing.signal.aborted) throw e; // stopped by the run, not a bad snapshot: kept
    // A snapshot QEMU cannot load would fail every run the same way: removed, so the next start saves a new one.
    m.log.log(
      `could not restore the boot snapshot ${path.basename(saved.dir).slice(0, 12)} (${errorMessage(e).split("\n")[0]}): removed it; booting instead, and the next start saves a new one`,
      m.name,
    );
    store.discard(saved);
    m.disks = undefined;
    return undefined;
  }
}

/**
 * The machine's saved boot, unless its files are not what was saved or its disk image was
 * built again since: then it is removed (the caller boots and saves a new one) and the log
 * says why. Both ways to a restore (`prepare` ahead of time, `startFromSnapshot`) find
 * snapshots through this.
 */
function findIntact(m: MachineCore, store: SnapshotStore, key: string, disk: string): SavedBoot | undefined {
  const saved = store.find(key, m.name);
  if (!saved?.meta.ok) return saved;
  const damaged = damage(saved);
  const stale = damaged ? undefined : staleDisk(saved, disk);
  if (!damaged && !stale) return saved;
  m.log.log(
    `the boot snapshot ${path.basename(saved.dir).slice(0, 12)} is ${damaged ? `damaged (${damaged})` : `stale (${stale})`}: removed; this start boots and saves a new one`,
    m.name,
  );
  store.discard(saved);
  return undefined;
}

/** What is wrong with a saved boot's files, if anything (sizes, and the device state's hash). */
function damage(saved: SavedBoot): string | undefined {
  for (const [name, want] of Object.entries(saved.meta.files ?? {})) {
    const file = path.join(saved.dir, name);
    let bytes: number;
    try {
      bytes = fs.statSync(file).size;
    } catch {
      return `${name} is missing`;
    }
    if (bytes !== want.bytes) return `${name} is ${bytes} bytes, ${want.bytes} when saved`;
    if (want.sha256 && sha256(file) !== want.sha256) return `${name} is not what was saved (its SHA-256 differs)`;
  }
  return undefined;
}

/**
 * Why a saved boot no longer fits the machine's disk image, if it does not. Its root
 * overlay holds only the clusters the boot changed, over that image; an image built anew
 * since (evicted by the store budget and rebuilt, or removed by `vmrig gc`) has the same
 * path but not the same bytes, since builds are not reproducible byte for byte, and the
 * overlay over it is a corrupt file system (the guest sees ext4 checksum errors). An
 * image is written before any boot of it starts, so one newer than the snapshot is
 * another build.
 */
function staleDisk(saved: SavedBoot, disk: string): string | undefined {
  let built: number;
  try {
    built = fs.statSync(disk).mtimeMs;
  } catch {
    return `its disk image ${disk} is missing`;
  }
  const savedAt = Date.parse(saved.meta.createdAt);
  if (!(built > savedAt)) return undefined;
  return `its disk image was built again after it was saved (image ${new Date(built).toISOString()}, snapshot ${saved.meta.createdAt}), so its disk overlay no longer fits`;
}

const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

/** The sizes of a saved boot's files, and the hash of its device state (small: the RAM is a file of its own). */
function fileRecord(dir: string): Record<string, { bytes: number; sha256?: string }> {
  const out: Record<string, { bytes: number; sha256?: string }> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    out[name] = { bytes: fs.statSync(file).size, ...(name === "state" ? { sha256: sha256(file) } : {}) };
  }
  return out;
}

/**
 * The first boot of a configuration, saved. It runs with the vlan links down until
 * systemd has finished booting: a boot that ends clean without any peer is what a boot
 * before any peer answered looks like, so restoring it is faithful. One that does not
 * (a failed unit, jobs still waiting) is recorded as such and booted normally, every time.
 */
async function saveBoot(
  m: MachineCore,
  spec: VmSpec,
  dir: string,
  location: string | undefined,
  strike: () => number,
): Promise<SnapshotMeta> {
  const meta = { machine: m.name, qemu: (await qemuInfo()).version, createdAt: new Date().toISOString() };
  // The template's RAM is a shared file on tmpfs while it boots (fast), copied into the
  // store once saved; it never outlives this function.
  const shm = ownedTempDir("/dev/shm");
  const t0 = Date.now();
  let vm: QemuVm | undefined;
  try {
    const drives = await createDisks(spec, {
      drives: Object.fromEntries(driveIds(spec).map((id) => [id, path.join(dir, `${id}.qcow2`)])),
      keep: false,
    });
    vm = await coldBoot(
      m,
      spec,
      { sockets: socketPaths(spec, ".s"), drives, ram: { path: path.join(shm, "ram"), share: true } },
      location,
      true,
    );
    const limit = isolatedBootS(spec);
    const r = await vm.backdoor.run(
      `s=$(timeout ${limit} systemctl is-system-running --wait 2>&1) || [ $? != 124 ] || s="timeout"; echo "$s" | tail -1; ` +
        `echo "jobs: $(systemctl list-jobs --no-legend 2>/dev/null | awk '{print $2}' | head -5 | xargs)"; ` +
        `echo "failed: $(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | head -5 | xargs)"`,
      limit + 30,
    );
    const out = r.stdout.toString().trim().split("\n");
    const state = out[0]?.trim() ?? "";
    if (state === "timeout" && out[2]?.trim() === "failed:") {
      const n = strike();
      const what = `its isolated first boot was still starting after ${limit} s (${out[1]?.trim()})`;
      if (n < STRIKES) throw new IsolatedBootTimedOut(`${what}; a busy host? the next run tries again`);
      const why = `${what}, ${n} times: it waits for its peers, so it boots every time`;
      m.log.log(`no boot snapshot: ${why}`, m.name);
      return { ...meta, ok: false, reason: why };
    }
    if (state !== "running") {
      const why = `its first boot did not finish clean without its peers (systemd ${state || "did not answer"}; ${out.slice(1).join("; ")}), so it boots every time`;
      m.log.log(`no boot snapshot: ${why}`, m.name);
      return { ...meta, ok: false, reason: why };
    }
    if (spec.desktopInput) {
      await settleDesktop(m, vm);
      await quietGuest(m, vm);
    }
    const bootMs = Date.now() - t0;
    await vm.pause();
    await vm.saveState(path.join(dir, "state"));
    const bootId = vm.backdoor.bootId;
    fs.writeFileSync(path.join(dir, "console.log"), vm.console.all);
    await vm.kill(); // the template's RAM must not change after the save
    vm = undefined;
    await run("cp", ["--sparse=always", path.join(shm, "ram"), path.join(dir, "ram")]);
    m.log.log(`saved a boot snapshot (isolated boot finished in ${secs(bootMs)})`, m.name);
    return { ...meta, ok: true, ...(bootId ? { bootId } : {}), bootMs, files: fileRecord(dir) };
  } finally {
    await vm?.kill();
    fs.rmSync(shm, { recursive: true, force: true });
  }
}

/** A wait before a desktop's snapshot is saved: it is saved when the wait ends, reached or not. */
interface Settling {
  /** what the log says once reached, given the time it took */
  reached: (took: string) => string;
  /** what the log says when `limitS` passed first */
  missed: string;
  limitS: number;
  intervalMs: number;
  /** one look: whether it is reached, and what was seen (for the log when it is not) */
  look: () => Promise<{ done: boolean; seen: string }>;
}

/** Look until reached or the limit has passed; either way the snapshot is saved after, and the log says which. */
async function settle(m: MachineCore, s: Settling): Promise<void> {
  const t0 = Date.now();
  let seen = "nothing";
  try {
    await poll(
      s.limitS,
      async () => {
        const r = await s.look();
        seen = r.seen;
        return { done: r.done };
      },
      () => new Error(`${s.missed} within ${s.limitS} s (${seen})`),
      s.intervalMs,
    );
    m.log.detail(s.reached(secs(Date.now() - t0)), m.name);
  } catch (e) {
    m.log.log(`saving the boot snapshot anyway: ${errorMessage(e)}`, m.name);
  }
}

/** How long a desktop's session may take to draw its screen before the snapshot is saved anyway. */
const SETTLE_S = 60;

/**
 * Wait until a desktop's session has drawn its screen: the display manager is ready once
 * the window manager holds the screen, but under TCG it draws its panels seconds later, and
 * a snapshot saved before that restores to a black screen for as long. Drawn means more
 * than a cursor on one colour, and still (≤ 0.5 % of the pixels changed in a second: a
 * panel's clock may tick).
 */
async function settleDesktop(m: MachineCore, vm: QemuVm): Promise<void> {
  const file = path.join(vm.spec.stateDir, `${vm.spec.name.slice(0, 20)}.settle.ppm`);
  let last: Gray | undefined;
  try {
    await settle(m, {
      reached: (took) => `the desktop was drawn ${took} after the display manager was ready`,
      missed: "the desktop did not settle",
      limitS: SETTLE_S,
      intervalMs: 1000,
      look: async () => {
        await vm.qmp.execute("screendump", { filename: file });
        const img = parsePnm(fs.readFileSync(file));
        const drawn = shareOffMode(img);
        const moved = last ? changedShare(last, img) : 1;
        last = img;
        return {
          done: drawn >= 0.005 && moved <= 0.005,
          seen: `${(drawn * 100).toFixed(1)} % of the screen drawn, ${(moved * 100).toFixed(1)} % changed in the last second`,
        };
      },
    });
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** How long a desktop's session may stay busy before the snapshot is saved anyway. */
const QUIET_S = 300;

/** A guest is quiet when its vCPUs were this busy at most, over two windows of 3 s in a row. */
const QUIET_BUSY = 0.2;

/** The first line of /proc/stat, 3 s apart: the share (‰) of the time neither idle nor waiting for I/O. */
const BUSY_SAMPLE =
  "read -r _ u n s i w q sq st _ < /proc/stat; sleep 3; read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat; " +
  "echo $(( (u2+n2+s2+q2+sq2+st2-u-n-s-q-sq-st) * 1000 / (u2+n2+s2+i2+w2+q2+sq2+st2-u-n-s-i-w-q-sq-st + 1) ))";

/**
 * Wait until a desktop's guest is quiet. The screen is drawn long before the session has
 * started: GNOME's settings daemons, its shell's extensions and the session's autostart
 * items (a browser) start for minutes under TCG. A snapshot saved then restores into that
 * start-up, and every run pays it again; saved once it is done, a run starts on an idle
 * desktop. (Measured: GNOME saved a minute after boot restored with its load at 5.6, and
 * an X client's window took 83 s to appear.)
 */
async function quietGuest(m: MachineCore, vm: QemuVm): Promise<void> {
  let quiet = 0;
  await settle(m, {
    reached: (took) => `the guest was quiet ${took} after the desktop was drawn`,
    missed: "the guest was not quiet",
    limitS: QUIET_S,
    intervalMs: 0, // each look takes its 3 s in the guest
    look: async () => {
      const busy = Number((await vm.backdoor.run(BUSY_SAMPLE, 30)).stdout.toString().trim()) / 1000;
      quiet = Number.isFinite(busy) && busy <= QUIET_BUSY ? quiet + 1 : 0;
      return { done: quiet >= 2, seen: `${(busy * 100).toFixed(0)} % busy over the last 3 s` };
    },
  });
}

/** The share of pixels whose grey level is not the most common one. */
function shareOffMode(img: Gray): number {
  return 1 - Math.max(...histogram(img)) / img.data.length;
}

/** The share of pixels that differ between two screens of one size (all of them if the size changed). */
function changedShare(a: Gray, b: Gray): number {
  if (a.width !== b.width || a.height !== b.height) return 1;
  let n = 0;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) n++;
  return n / a.data.length;
}

async function restoreBoot(m: MachineCore, spec: VmSpec, saved: SavedBoot): Promise<QemuVm> {
  const ids = driveIds(spec);
  m.disks = await createDisks(spec, {
    drives: Object.fromEntries(ids.map((id) => [id, path.join(spec.stateDir, `${spec.name}-${id}.qcow2`)])),
    keep: false,
    backing: Object.fromEntries(ids.map((id) => [id, path.join(saved.dir, `${id}.qcow2`)])),
  });
  const layout: Layout = {
    sockets: socketPaths(spec),
    drives: m.disks,
    ram: { path: path.join(saved.dir, "ram"), share: false },
    incoming: true,
  };
  const vm = await launchQemu(spec, {
    layout,
    restore: {
      state: path.join(saved.dir, "state"),
      bootId: saved.meta.bootId ?? "",
      console: fs.readFileSync(path.join(saved.dir, "console.log"), "utf8"),
      origin: `from boot snapshot ${path.basename(saved.dir).slice(0, 12)}`,
      linksUp: true,
      paused: true,
    },
    onConsoleLine: (line) => m.log.consoleLine(m.name, line),
    signal: m.closing.signal,
  });
  return vm;
}

/** A loaded restore, let run: resumed, its shell resynchronised, its clock set. */
async function resumed(vm: QemuVm): Promise<QemuVm> {
  await resumeRestored(vm);
  return vm;
}

/**
 * Load a machine's boot snapshot in the background, paused, before anything uses it: its
 * first start then only resumes it. A paused VM uses no CPU; until `start()` the machine is
 * not up for the script (`isUp()` is false), as if it had not been started.
 */
export function prepare(m: MachineCore): void {
  if (m.prepared || m.disks !== undefined || !m.ctx.snapshots || m.guest?.running) return;
  const store = m.ctx.snapshots;
  m.prepared = (async () => {
    const spec = m.vmSpec("start()");
    const saved = findIntact(m, store, snapshotKey(spec, await qemuInfo()), spec.disk);
    return saved?.meta.ok ? await restoreBoot(m, spec, saved) : undefined;
  })().catch((e: unknown) => {
    m.log.detail(`could not load the boot snapshot ahead of time: ${errorMessage(e)}`, m.name);
    m.disks = undefined;
    return undefined;
  });
}
