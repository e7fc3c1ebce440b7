import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOneMachine } from "./helpers.js";
import type { Machine } from "../../src/machine/machine.js";
import { VmrigError } from "../../src/util/errors.js";
import { desktop } from "../../examples/x11-terminal.vmrig.js";

// One graphical machine: the node of examples/x11-terminal.vmrig.ts, so both share its
// image and boot snapshot.
let m: Machine;
let resultDir: string;
let close: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ m, resultDir, close } = await startOneMachine("x11", desktop, { enableOCR: true }));
});

afterAll(() => close?.());

async function errorOf(p: Promise<unknown>): Promise<VmrigError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(VmrigError);
  return e as VmrigError;
}

/** An xterm titled `title` running `cat > file`, focused, its reader started: what is typed lands in `file`. */
async function focusedTerminal(title: string, file: string): Promise<void> {
  await m.succeed(`xterm -title ${title} -e sh -c 'cat > ${file}' >/dev/null 2>&1 &`);
  await m.waitForWindow(new RegExp(title), 60);
  await m.succeed(`xdotool search --sync --name ${title} windowactivate --sync`);
  // the window manager marks the window active a moment before X moves the keyboard focus
  await m.waitUntilSucceeds(`[ "$(xdotool getwindowfocus getwindowname)" = ${title} ]`, 30);
  // `cat` reads the terminal from its first instant (its shell made the file first), so nothing is typed before a reader
  await m.waitUntilSucceeds(`test -e ${file} && pgrep -f '^cat$' >/dev/null`, 30);
}

describe("an X11 desktop (SPEC §8, real VM)", () => {
  it("is restored logged in: X answers, IceWM runs as the auto-login user, on Debian's full kernel", async () => {
    expect(m.origin).toMatch(/from boot snapshot/);
    await m.waitForX(30);
    await m.succeed("pgrep -u alice -x icewm");
    expect(await m.succeed("uname -r")).toMatch(/^\d[^-]*-amd64$/m);
    // the DRM driver drives QEMU's VGA at virtualisation.resolution
    expect(await m.succeed("xdpyinfo | grep dimensions")).toContain("1024x768 pixels");
    expect(await m.succeed("xinput list")).toContain("Virtio Keyboard");
    // a busy guest must not turn one held key into two: X's autorepeat is off
    expect(await m.succeed("xset q")).toMatch(/auto repeat:\s+off/);
  });

  it("is restored with its desktop drawn: the boot snapshot waits for the session to paint", async () => {
    // before, it was saved as soon as IceWM held the screen, and restores showed a black
    // screen (but the pointer) until IceWM had drawn its taskbar, seconds later
    const dump = path.join(resultDir, "restored.ppm");
    await m.qmp("screendump", { filename: dump });
    const raster = fs.readFileSync(dump).subarray(-1024 * 768 * 3);
    let lit = 0;
    for (let i = 0; i < raster.length; i += 3) if (raster[i]! + raster[i + 1]! + raster[i + 2]! > 60) lit++;
    expect(lit / (1024 * 768)).toBeGreaterThan(0.02); // IceWM's taskbar alone is ~3 %
  });

  it("types into the focused X client: sendChars reaches xterm, asserted in the guest", async () => {
    await focusedTerminal("KeyProbe", "/tmp/keys");
    await m.sendChars("Hello, X! 42 $HOME\n");
    await m.waitUntilSucceeds("grep -q 42 /tmp/keys", 30).catch(() => undefined);
    expect(await m.succeed("cat /tmp/keys; xdotool getwindowfocus getwindowname")).toBe(
      "Hello, X! 42 $HOME\nKeyProbe\n",
    );
    expect(await m.getWindowNames()).toContain("KeyProbe");
  });

  it("types a long text into a busy guest with every key arriving once and no modifier stuck", async () => {
    // QEMU's sendkey dropped releases once its queue held 50 events: at 10 ms a key, shift
    // stuck from the 6th line on
    await focusedTerminal("LongProbe", "/tmp/long");
    const busy = "for i in 1 2 3; do (sh -c 'while :; do :; done' & echo $! >> /tmp/busy); done";
    await m.succeed(busy);
    try {
      const line = "chrome://sandbox The Quick: Brown_Fox! (42) <ok>?\n";
      for (let i = 0; i < 10; i++) await m.sendChars(line);
      await m.waitUntilSucceeds(`[ "$(wc -c < /tmp/long)" -ge ${line.length * 10} ]`, 60).catch(() => undefined);
      expect(await m.succeed("cat /tmp/long")).toBe(line.repeat(10));
    } finally {
      await m.succeed("kill $(cat /tmp/busy) || true; pkill -f 'title LongProbe' || true");
    }
    const e = await errorOf(m.sendKey("ctrl-nosuchkey"));
    expect(e.message).toContain('QEMU refused the key combination "ctrl-nosuchkey"');
    expect(e.hint).toContain("QKeyCode");
  });

  it("waitForWindow times out with the windows it saw", async () => {
    const e = await errorOf(m.waitForWindow(/NoSuchWindow/, 2));
    expect(e.message).toContain("timed out after 2 s waiting for a window matching /NoSuchWindow/");
    expect(e.message).toContain('"KeyProbe"');
  });

  it("moves, clicks and drags the pointer in screen pixels (the tablet), as an X client sees it", async () => {
    await m.moveMouse(100, 200);
    await m.waitUntilSucceeds("xdotool getmouselocation | grep -q 'x:100 y:200 '", 30);
    await m.moveMouse(1023, 767);
    await m.waitUntilSucceeds("xdotool getmouselocation | grep -q 'x:1023 y:767 '", 30);
    await errorOf(m.moveMouse(1024, 10));
    // xev's window reports what reached it, with window-relative coordinates
    await m.succeed("xev -name PointerProbe -geometry 300x200+200+150 -event button > /tmp/xev.log 2>&1 &");
    await m.waitForWindow(/PointerProbe/, 60);
    const geo = await m.succeed("xdotool search --sync --name PointerProbe getwindowgeometry --shell");
    const at = (k: string) => Number(new RegExp(`^${k}=(\\d+)$`, "m").exec(geo)![1]);
    const [x, y] = [at("X"), at("Y")];
    await m.click(x + 40, y + 30);
    await m.waitUntilSucceeds("grep -A3 ButtonRelease /tmp/xev.log | grep -q '(40,30)'", 30);
    await m.click(x + 50, y + 60, { button: "right" });
    await m.waitUntilSucceeds("grep -A3 ButtonPress /tmp/xev.log | grep -q 'button 3'", 30);
    await m.drag({ x: x + 10, y: y + 10 }, { x: x + 200, y: y + 150 });
    await m.waitUntilSucceeds("grep -A3 ButtonRelease /tmp/xev.log | grep -q '(200,150)'", 30);
  });

  it("clicks a button by its label (clickText), and the program acts on it", async () => {
    await m.succeed("xmessage -name ChoiceProbe -buttons Accept,Decline -print 'Do you accept?' > /tmp/choice 2>&1 &");
    await m.waitForWindow(/ChoiceProbe|xmessage/, 60);
    await m.clickText(/Decline/, { timeout: 60 });
    await m.waitUntilSucceeds("grep -qx Decline /tmp/choice", 30);
    // again, with the pointer left over the label it must read: clickText moves it away
    await m.succeed("xmessage -name ChoiceProbe -buttons Accept,Decline -print 'Again?' > /tmp/choice 2>&1 &");
    // IceWM maps a window that appears right after a click below the focused one (the
    // earlier tests' windows): raise it, as a test of a real program would
    await m.succeed("xdotool search --sync --name ChoiceProbe windowactivate --sync");
    await m.clickText(/Decline/, { timeout: 60 });
    await m.waitUntilSucceeds("grep -qx Decline /tmp/choice", 30);
    // every word's box is on the screen, in screen pixels
    const words = await m.getScreenWords();
    for (const w of words) expect(w.x + w.width).toBeLessThanOrEqual(1024);
  });

  it("a display manager that fails is reported at once, with Xorg's errors", async () => {
    await m.succeed("mv /usr/lib/xorg/Xorg /usr/lib/xorg/Xorg.away", "systemctl stop display-manager.service");
    await m.execute("systemctl start display-manager.service");
    const t0 = Date.now();
    const e = await errorOf(m.waitForX(120));
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(e.message).toContain("the display manager failed");
    expect(e.message).toContain("display-manager.service is failed");
    expect(e.message).toContain("/usr/lib/xorg/Xorg: No such file or directory");
    await m.succeed("mv /usr/lib/xorg/Xorg.away /usr/lib/xorg/Xorg", "systemctl restart display-manager.service");
    await m.waitForX(120);
    await m.succeed("pgrep -u alice -x icewm");
  });
});
