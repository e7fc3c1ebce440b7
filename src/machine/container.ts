import path from "node:path";
import { adopt, secs, untilSystemdAnswers } from "./boot.js";
import type { MachineCore } from "./core.js";
import { launchContainer, type ContainerSpec } from "../vm/nspawn.js";
import { VmrigError, errorMessage } from "../util/errors.js";

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
    signal: m.closing.signal,
  }).catch((e: unknown) => {
    throw e instanceof VmrigError
      ? e
      : m.fail(`could not start the container: ${errorMessage(e)}`, "start()", { location, cause: e });
  });
  adopt(m, ct);
  try {
    await untilSystemdAnswers(m, ct, READY_S, location, {
      hint: "the console log in the result folder shows what systemd-nspawn and systemd said",
    });
  } catch (e) {
    await ct.kill();
    throw e;
  }
  m.systemdReadyMs = Date.now() - t0;
  m.log.log(`container started in ${secs(m.systemdReadyMs)} (shell after ${secs(ct.bootMs)})`, m.name);
  m.log.mark("power", `container up (${secs(m.systemdReadyMs)})`, m.name);
}
