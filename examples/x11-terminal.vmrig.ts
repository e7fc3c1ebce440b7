// An X11 desktop driven by its keyboard (SPEC §8): IceWM in alice's auto-login session,
// an xterm typed into with sendChars, the typed command's effect checked in the guest,
// and the text read back from the screen by OCR.
import { defineModule, defineTest } from "vmrig";

/** The desktop: alice logged in on IceWM, with xterm (vmrig's own X11 tests boot this node too). */
export const desktop = defineModule({
  users: { users: { alice: { isNormalUser: true } } },
  services: {
    xserver: {
      enable: true,
      displayManager: { autoLogin: { enable: true, user: "alice" } },
      windowManager: { icewm: { enable: true } },
    },
  },
  environment: { systemPackages: ["xterm"] },
});

export default defineTest({
  name: "x11-terminal",
  enableOCR: true,
  nodes: { machine: desktop },
  async testScript({ machine }) {
    await machine.waitForX();
    // the session is alice's, as NixOS's auto-login makes it
    await machine.succeed("pgrep -u alice -x icewm");
    // allowTitleOps off: bash's prompt would rename the window to "alice@machine: ~"
    await machine.succeed(
      "su - alice -c \"DISPLAY=:0 xterm -xrm 'XTerm*allowTitleOps: false' -title Typing -fa DejaVuSansMono -fs 16 >/dev/null 2>&1 &\"",
    );
    await machine.waitForWindow(/Typing/);
    // Keys go to the focused window. IceWM focuses a new window a moment after it is mapped;
    // as NixOS's tests do, make sure before typing.
    await machine.succeed("xdotool search --sync --name Typing windowactivate --sync");
    // and the shell inside must be ready: what xterm receives before its shell reads the
    // terminal is lost, so wait until its prompt is on the screen
    await machine.waitForText(/alice@machine/);
    await machine.sendChars("echo typed by $(whoami) > /tmp/typed\n");
    await machine.waitForFile("/tmp/typed");
    const typed = await machine.succeed("cat /tmp/typed");
    if (typed.trim() !== "typed by alice") throw new Error(`the xterm wrote ${JSON.stringify(typed)}`);
    await machine.sendChars("echo OCR can read this\n");
    await machine.waitForText(/OCR can read this/);
    await machine.screenshot("xterm");
  },
});
