import path from "node:path";
import { adopt, secs, SYSTEMD_READY } from "./boot.js";
import type { MachineCore } from "./core.js";
import { launchContainer, type ContainerSpec } from "../vm/nspawn.js";
import { VmrigError, errorMessage, tail } from "../util/errors.js";

// A container's start (SPEC §9): systemd-nspawn on the image's tree under the machine's
// own writable layer, which lives for the whole run (a VM's disk does the same).

/** How long systemd in a container may take to take requests: seconds, not a VM's minutes. */
const READY_S = 120;

export async function startContainer(m: MachineCore, spec: ContainerSpec, location: string | undefined): Promise<void> {
  const t0 = Date.now();
  const dir = path.join(spec.stateDir, `${spec.name}.ct`);
  m.disks ??= { upper: path.join(dir, "upper"), work: path.join(dir, "work") };
  const ct = await launchContainer(spec, {
    disk: { upper: m.disks.upper!, work: m.disks.work! },
    onConsoleLine: (line) => m.log.consoleLine(m.name, line),
  }).catch((e: unknown) => {
    throw e instanceof VmrigError
      ? e
      : m.fail(`could not start the container: ${errorMessage(e)}`, "start()", { location, cause: e });
  });
  adopt(m, ct);
  ct.backdoor.on("stray", (b: Buffer) => m.log.detail(`(output outside any command) ${b.toString()}`, m.name));
  const ready = await ct.backdoor
    .run(SYSTEMD_READY, READY_S)
    .catch((e: unknown) => ({ status: -1, stdout: Buffer.from(errorMessage(e)) }));
  if (ready.status !== 0) {
    await ct.kill();
    throw m.fail(`systemd did not start taking requests within ${READY_S} s`, "start()", {
      location,
      output: tail(ct.console.all, 30),
      hint: "the console log in the result folder shows what systemd-nspawn and systemd said",
    });
  }
  m.systemdReadyMs = Date.now() - t0;
  m.log.log(`container started in ${secs(m.systemdReadyMs)} (shell after ${secs(ct.bootMs)})`, m.name);
  m.log.mark("power", `container up (${secs(m.systemdReadyMs)})`, m.name);
}
