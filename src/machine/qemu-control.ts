import { DEFAULT_TIMEOUT, type MachineCore } from "./core.js";
import type { QmpEvent } from "../vm/qmp.js";

export async function qmp(
  m: MachineCore,
  location: string | undefined,
  command: string,
  args?: Record<string, unknown>,
): Promise<unknown> {
  const vm = await m.qemu(`qmp(${JSON.stringify(command)})`, location);
  return vm.qmp.execute(command, args);
}

export async function sendMonitorCommand(
  m: MachineCore,
  location: string | undefined,
  command: string,
): Promise<string> {
  const vm = await m.qemu(`sendMonitorCommand(${JSON.stringify(command)})`, location);
  return vm.qmp.hmp(command);
}

export async function waitForQmpEvent(
  m: MachineCore,
  location: string | undefined,
  filter: (e: QmpEvent) => boolean,
  timeout = DEFAULT_TIMEOUT,
): Promise<QmpEvent> {
  const vm = await m.qemu("waitForQmpEvent()", location);
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(m.fail(`timed out after ${timeout} s waiting for a QMP event`, "waitForQmpEvent()", { location })),
    timeout * 1000,
  );
  try {
    return await vm.qmp.waitForEvent(filter, 0, ac.signal);
  } finally {
    clearTimeout(timer);
  }
}
