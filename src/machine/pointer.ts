import type { MachineCore } from "./core.js";
import type { QemuVm } from "../vm/qemu.js";
import { resolutionOf } from "../vm/qemu-args.js";

/**
 * The pointer (SPEC §8): an absolute tablet, in screen pixels. QEMU takes absolute
 * positions in 0..0x7fff across the display; the guest's tablet driver maps that range
 * onto the screen, so a pixel is addressed by the centre of its slice of the range.
 * A graphical machine has `virtio-tablet-pci`; on any other VM QEMU's PS/2 mouse is
 * relative and the position is approximate.
 */

const ABS_MAX = 0x7fff;

export type MouseButton = "left" | "right" | "middle";

export interface ClickOptions {
  button?: MouseButton;
  /** a double click */
  double?: boolean;
}

function toAbs(v: number, size: number): number {
  return Math.max(0, Math.min(ABS_MAX, Math.round(((v + 0.5) * (ABS_MAX + 1)) / size)));
}

function checkPoint(m: MachineCore, vm: QemuVm, call: string, location: string | undefined, x: number, y: number) {
  const { x: w, y: h } = resolutionOf(vm.spec);
  if (!Number.isFinite(x) || !Number.isFinite(y) || x < 0 || y < 0 || x >= w || y >= h)
    throw m.fail(`(${x}, ${y}) is not on the ${w}×${h} screen`, call, {
      location,
      hint: "coordinates are screen pixels from the top left, below virtualisation.resolution",
    });
  return { x: toAbs(x, w), y: toAbs(y, h) };
}

async function sendEvents(vm: QemuVm, events: unknown[]): Promise<void> {
  await vm.qmp.execute("input-send-event", { events });
}

/** VMs whose pointer vmrig has parked in the corner, out of OCR's way, and not moved since. */
const parked = new WeakSet<QemuVm>();

async function moveTo(vm: QemuVm, p: { x: number; y: number }): Promise<void> {
  parked.delete(vm);
  await sendEvents(vm, move(p));
}

/**
 * Move the pointer out of the way of what OCR reads: a pointer over a word hides letters
 * ("Decline" under the arrow reads "Dec ine"), and hovering changes how a button looks.
 * It goes to the bottom right corner (the one no desktop puts a hot corner in). Returns
 * false, doing nothing, if it is already there: a second read would see the same screen.
 */
export async function parkPointer(m: MachineCore, location: string | undefined, call: string): Promise<boolean> {
  const vm = await m.qemu(call, location);
  if (parked.has(vm)) return false;
  const { x: w, y: h } = resolutionOf(vm.spec);
  await sendEvents(vm, move({ x: toAbs(w - 1, w), y: toAbs(h - 1, h) }));
  parked.add(vm);
  return true;
}

const move = (p: { x: number; y: number }) => [
  { type: "abs", data: { axis: "x", value: p.x } },
  { type: "abs", data: { axis: "y", value: p.y } },
];
const button = (b: MouseButton, down: boolean) => ({ type: "btn", data: { button: b, down } });

export async function moveMouse(m: MachineCore, location: string | undefined, x: number, y: number): Promise<void> {
  const call = `moveMouse(${x}, ${y})`;
  const vm = await m.qemu(call, location);
  await moveTo(vm, checkPoint(m, vm, call, location, x, y));
}

/** A click where the pointer is, or at (x, y). */
export async function click(
  m: MachineCore,
  location: string | undefined,
  x?: number,
  y?: number,
  opts: ClickOptions = {},
): Promise<void> {
  const b = opts.button ?? "left";
  const call = x === undefined ? "click()" : `click(${x}, ${y ?? "?"})`;
  const vm = await m.qemu(call, location);
  if (x !== undefined || y !== undefined) {
    if (x === undefined || y === undefined) throw m.fail("click() takes both x and y, or neither", call, { location });
    await moveTo(vm, checkPoint(m, vm, call, location, x, y));
  }
  m.log.log(`${opts.double ? "double-" : ""}clicking ${b}${x === undefined ? "" : ` at (${x}, ${y})`}`, m.name);
  for (let i = 0; i < (opts.double ? 2 : 1); i++) {
    await sendEvents(vm, [button(b, true)]);
    await sendEvents(vm, [button(b, false)]);
  }
}

/** Press the left button at `from`, move to `to`, release. */
export async function drag(
  m: MachineCore,
  location: string | undefined,
  from: { x: number; y: number },
  to: { x: number; y: number },
): Promise<void> {
  const call = `drag((${from.x}, ${from.y}), (${to.x}, ${to.y}))`;
  const vm = await m.qemu(call, location);
  const a = checkPoint(m, vm, call, location, from.x, from.y);
  const b = checkPoint(m, vm, call, location, to.x, to.y);
  m.log.log(`dragging from (${from.x}, ${from.y}) to (${to.x}, ${to.y})`, m.name);
  await moveTo(vm, a);
  await sendEvents(vm, [button("left", true)]);
  // through a few points on the way: programs that track motion see a drag, not a jump
  for (const t of [0.25, 0.5, 0.75, 1])
    await sendEvents(vm, move({ x: Math.round(a.x + (b.x - a.x) * t), y: Math.round(a.y + (b.y - a.y) * t) }));
  await sendEvents(vm, [button("left", false)]);
}
