// nixpkgs nixos/tests/sgtpuzzles.nix, its Python test script verbatim (SPEC §8, §11).
// Adapted, the node only: nixpkgs' common/x11.nix is services.xserver with IceWM and the
// session logged in as root, which is what vmrig does without autoLogin; Debian's package
// is `sgt-puzzles` and names its programs `sgt-*` in /usr/games, so `mines` is a symlink.
import { defineTest } from "vmrig";

export default defineTest({
  name: "nixos-sgtpuzzles",
  enableOCR: true,
  nodes: {
    machine: {
      services: { xserver: { enable: true, windowManager: { icewm: { enable: true } } } },
      environment: { systemPackages: ["sgt-puzzles"] },
      systemd: { tmpfiles: { rules: ["L+ /usr/local/bin/mines - - - - /usr/games/sgt-mines"] } },
    },
  },
  testScript: `
    start_all()
    machine.wait_for_x()

    machine.execute("mines >&2 &")

    machine.wait_for_window("Mines")
    machine.wait_for_text("Marked")
    machine.screenshot("mines")
  `,
});
