import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOneMachine } from "./helpers.js";
import type { Machine } from "../../src/machine/machine.js";
import { VmrigError } from "../../src/util/errors.js";
import { defineModule, lib } from "../../src/config/eval.js";
import { gnome } from "../../examples/gnome-wayland.vmrig.js";

// The node of examples/gnome-wayland.vmrig.ts (GDM, GNOME on Wayland, gnome-shell in unsafe
// mode) without its Firefox autostart item: under TCG Firefox's start keeps gnome-shell too busy
// to answer for minutes, and these checks need a window of their own. Firefox stays installed,
// so the node has the example's Debian packages and shares their layer.
const quietGnome = defineModule({ imports: [gnome], environment: { systemPackages: lib.mkForce(["firefox-esr"]) } });

let m: Machine;
let close: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ m, close } = await startOneMachine("gnome", quietGnome, { enableOCR: false }));
}, 900_000);

afterAll(() => close?.());

describe("GNOME on Wayland (SPEC §8, real VM)", () => {
  it("waitForX, waitForWindow and getWindowNames answer through gnome-shell's Eval, and a refused Eval says how to allow it", async () => {
    expect(m.origin).toMatch(/from boot snapshot/);
    await m.waitForX(120);
    // an X client through Xwayland, with the cookie the backdoor's XAUTHORITY points at
    await m.succeed("xev -name XevProbe >/dev/null 2>&1 &");
    await m.waitForWindow(/XevProbe/, 300);
    expect(await m.getWindowNames()).toContain("XevProbe");
    const timedOut = await m.waitForWindow(/NoSuchWindow/, 10).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(VmrigError);
    expect((timedOut as VmrigError).message).toContain('"XevProbe"');
    // gnome-shell leaves unsafe mode, as a shell started without --unsafe-mode is
    await m.succeed("/usr/lib/vmrig/gnome-eval 'global.context.unsafe_mode = false'");
    // (waitForWindow keeps asking a shell that does not answer, and stops at a refusal)
    const refused = await m.waitForWindow(/XevProbe/, 300).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(VmrigError);
    expect((refused as VmrigError).message).toContain("org.gnome.Shell.Eval refused");
    expect((refused as VmrigError).hint).toContain("--unsafe-mode");
  }, 900_000);
});
