import fs from "node:fs";
import net from "node:net";
import type { MachineCore } from "./core.js";
import type { Guest } from "../vm/guest.js";
import { launchQemu, type QemuVm } from "../vm/qemu.js";
import type { Layout, VmSpec } from "../vm/qemu-args.js";
import { VmrigError, errorMessage, tail } from "../util/errors.js";
import { run } from "../util/proc.js";

// A cold boot of one machine (used by power.ts for every boot and by boot-snapshot.ts for
// the isolated first boot it saves).

/** What a kernel prints when it crashes (an Oops may leave the boot hanging rather than stopped). */
const KERNEL_CRASH =
  /\b(Oops: |Kernel panic - not syncing|BUG: unable to handle|general protection fault|double fault: |invalid opcode: )/;

/** A boot that ended in a kernel crash: start() may try once more. */
export class KernelCrash extends Error {
  constructor(
    readonly line: string,
    /** the console's last lines */
    readonly console: string,
  ) {
    super(`the guest kernel crashed: ${line}`);
  }
}

/**
 * Loops in the guest (no host round trips) until systemd answers and has queued
 * its boot transaction (or finished booting): systemd opens its socket before it
 * queues the default target, and in that window every unit looks idle.
 */
const SYSTEMD_READY =
  "until s=$(systemctl show -p NJobs -p SystemState 2>/dev/null) && " +
  "! { printf '%s\\n' \"$s\" | grep -qx SystemState=initializing && printf '%s\\n' \"$s\" | grep -qx NJobs=0; }; do sleep 0.05; done";

export const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * A freshly started guest, until systemd takes requests (SYSTEMD_READY): its stray output
 * goes to the log; a report on this machine if systemd does not answer within `seconds`.
 * `stop` ends the wait early with its own error (a kernel crash seen on the console).
 */
export async function untilSystemdAnswers(
  m: MachineCore,
  g: Guest,
  seconds: number,
  location: string | undefined,
  opts: { hint?: string; stop?: Promise<never> } = {},
): Promise<void> {
  g.backdoor.on("stray", (b: Buffer) => m.log.detail(`(output outside any command) ${b.toString()}`, m.name));
  const ready = await Promise.race([
    g.backdoor
      .run(SYSTEMD_READY, seconds)
      .catch((e: unknown) => ({ status: -1, stdout: Buffer.from(errorMessage(e)) })),
    ...(opts.stop ? [opts.stop] : []),
  ]);
  if (ready.status !== 0)
    throw m.fail(`systemd did not start taking requests within ${seconds} s`, "start()", {
      location,
      output: tail(g.console.all, 30),
      ...(opts.hint ? { hint: opts.hint } : {}),
    });
}

/**
 * Interactive mode: QEMU serves the display over VNC on a unix socket; most VNC viewers
 * want TCP, so a relay on a free 127.0.0.1 port makes watching one command. It closes
 * with the VM.
 */
export function serveDisplay(m: MachineCore, vm: QemuVm): void {
  const socket = vm.spec.vncSocket;
  if (!socket) return;
  const relay = net.createServer((client) => {
    const display = net.connect(socket);
    client.pipe(display).pipe(client);
    const end = () => {
      client.destroy();
      display.destroy();
    };
    client.on("error", end).on("close", end);
    display.on("error", end).on("close", end);
  });
  relay.on("error", (e) => m.log.detail(`the display relay failed: ${errorMessage(e)}`, m.name));
  relay.listen(0, "127.0.0.1", () => {
    const { port } = relay.address() as net.AddressInfo;
    m.log.log(`display: VNC on unix socket ${socket}; watch it: vncviewer 127.0.0.1::${port}`, m.name);
  });
  relay.unref();
  vm.on("exit", () => relay.close());
}

export function adopt(m: MachineCore, g: Guest): void {
  m.guest = g;
  if (g.kind === "qemu") m.ctx.recorder?.attach(g as QemuVm);
  g.on("exit", () => m.log.detail(g.kind === "qemu" ? "QEMU exited" : "the container exited", m.name));
}

/** qcow2 overlays: drive `root` on the image (or on `backing`'s file of the same id), the others blank unless backed. */
export async function createDisks(
  spec: VmSpec,
  o: { drives: Record<string, string>; keep: boolean; backing?: Record<string, string> },
): Promise<Record<string, string>> {
  for (const [id, file] of Object.entries(o.drives)) {
    // A kept root overlay over an image built again since it was last written is a corrupt
    // file system (builds are not reproducible byte for byte): made anew instead.
    if (o.keep && fs.existsSync(file) && !(id === "root" && mtime(spec.disk) > mtime(file))) continue;
    const backing = o.backing?.[id];
    if (backing) await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", file]);
    else if (id === "root") await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", spec.disk, "-F", "raw", file]);
    else await run("qemu-img", ["create", "-q", "-f", "qcow2", file, `${spec.emptyDisks![Number(id.slice(5))]}M`]);
  }
  return o.drives;
}

const mtime = (file: string) => fs.statSync(file).mtimeMs;

/** How long a cold boot may take to reach the guest's shell (minutes under TCG on a loaded host). */
const BOOT_DEADLINE_S = 600;

/**
 * One cold boot: QEMU up, backdoor answering, systemd taking requests; a kernel crash on
 * the console ends it at once. Waits for a cold-boot slot: boots at once on few cores
 * crawl, restores cost almost nothing.
 */
export async function coldBoot(
  m: MachineCore,
  spec: VmSpec,
  layout: Layout,
  location: string | undefined,
  isolated: boolean,
): Promise<QemuVm> {
  const release = (await m.ctx.coldBoots?.take()) ?? (() => undefined);
  let vm: QemuVm | undefined;
  let watching = true;
  let crashSeen = false;
  const ac = new AbortController();
  const crashed = new Promise<never>((_, reject) =>
    ac.signal.addEventListener("abort", () => reject(ac.signal.reason as Error)),
  );
  crashed.catch(() => undefined);
  let consoleText = "";
  // A boot that never reaches the guest's shell (a kernel that hangs, a root it cannot
  // mount) ends here, not at the test's global timeout, and says what the console showed.
  const deadline = setTimeout(
    () =>
      ac.abort(
        new VmrigError(`the machine's shell did not answer within ${BOOT_DEADLINE_S} s of starting QEMU`, {
          machine: m.name,
          call: "start()",
          ...(location ? { location } : {}),
          output: tail(consoleText, 30),
          hint: "the console log in the result folder shows how far the boot got; on a busy host without KVM, run fewer tests at once (--jobs)",
        }),
      ),
    BOOT_DEADLINE_S * 1000,
  );
  const onLine = (line: string) => {
    m.log.consoleLine(m.name, line);
    if (!watching) return;
    consoleText = (consoleText + line + "\n").slice(-20_000);
    if (crashSeen || !KERNEL_CRASH.test(line)) return;
    crashSeen = true;
    // a moment more, so that the report and the console log hold the trace that follows
    setTimeout(() => ac.abort(new KernelCrash(line, tail(consoleText, 40))), 1500);
  };
  try {
    try {
      vm = await launchQemu(spec, {
        layout,
        linksDown: isolated,
        onConsoleLine: onLine,
        signal: AbortSignal.any([ac.signal, m.closing.signal]),
      });
    } catch (e) {
      throw e instanceof VmrigError || e instanceof KernelCrash
        ? e
        : m.fail(`could not boot: ${errorMessage(e)}`, "start()", { location, cause: e });
    }
    if (!isolated) adopt(m, vm);
    // The backdoor starts before systemd (guest/init); as in NixOS, where it is a
    // unit, a started machine must also take `systemctl` requests.
    await untilSystemdAnswers(m, vm, 300, location, { stop: crashed });
    if (crashSeen) await crashed; // an Oops that did not stop the boot still leaves a kernel not to trust
    return vm;
  } catch (e) {
    await vm?.kill();
    throw e;
  } finally {
    clearTimeout(deadline);
    watching = false;
    release();
  }
}
