import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Logger } from "../../src/session/logger.js";
import { createTopology, type Topology } from "../../src/session/topology.js";
import type { Machine } from "../../src/machine/machine.js";
import { VmrigError } from "../../src/util/errors.js";
import { gnome } from "../../examples/gnome-wayland.vmrig.js";

// The node of examples/gnome-wayland.vmrig.ts (GDM, GNOME on Wayland, gnome-shell in unsafe
// mode), so both share its image and boot snapshot: restored logged in, in under a second.
let topo: Topology;
let m: Machine;
let resultDir: string;

beforeAll(async () => {
  resultDir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-gnome-"));
  const logger = new Logger(path.join(resultDir, "log.txt"), () => undefined);
  topo = await createTopology(
    { name: "gnome", nodes: { machine: gnome } },
    { logger, resultDir, sourceDir: process.cwd(), accel: "auto", keepVmState: false, enableOCR: false },
  );
  m = topo.machines[0] as Machine;
  await m.start();
}, 900_000);

afterAll(async () => {
  await topo?.close();
  fs.rmSync(resultDir, { recursive: true, force: true });
});

describe("GNOME on Wayland (SPEC §8, real VM)", () => {
  it("waitForX, waitForWindow and getWindowNames answer through gnome-shell's Eval, and a refused Eval says how to allow it", async () => {
    expect(m.origin).toMatch(/from boot snapshot/);
    await m.waitForX(120);
    // the seed's autostart item starts Firefox at login, and gnome-shell hardly answers while it
    // starts under TCG: this test needs a window of its own, not Firefox
    await m.waitUntilSucceeds("pkill -f /usr/lib/firefox-esr/firefox-esr", 300);
    // an X client through Xwayland, with the cookie the backdoor's XAUTHORITY points at
    await m.succeed("xev -name XevProbe >/dev/null 2>&1 &");
    await m.waitForWindow(/XevProbe/, 600);
    expect(await m.getWindowNames()).toContain("XevProbe");
    const timedOut = await m.waitForWindow(/NoSuchWindow/, 30).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(VmrigError);
    expect((timedOut as VmrigError).message).toContain('"XevProbe"');
    // gnome-shell leaves unsafe mode, as a shell started without --unsafe-mode is (retried:
    // while Firefox starts, the shell may not answer within gdbus's 25 s)
    await m.waitUntilSucceeds("/usr/lib/vmrig/gnome-eval 'global.context.unsafe_mode = false'", 300);
    // (waitForWindow keeps asking a shell that does not answer, and stops at a refusal)
    const refused = await m.waitForWindow(/XevProbe/, 300).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(VmrigError);
    expect((refused as VmrigError).message).toContain("org.gnome.Shell.Eval refused");
    expect((refused as VmrigError).hint).toContain("--unsafe-mode");
  }, 900_000);
});
