// nixpkgs nixos/tests/openarena.nix, its Python test script verbatim (SPEC §8, §11): an
// OpenArena server with two bots and two graphical clients; the server's log shows both
// players entering the game, each client keeps screenshots, and one client is cut off the
// network for 10 s and comes back.
// Adapted, the nodes only: nixpkgs' common/x11.nix is services.xserver with IceWM and the
// session logged in as root, which is what vmrig does without autoLogin. NixOS's
// `hardware.opengl.driSupport` is Debian's Mesa drivers (libgl1-mesa-dri): the clients draw
// with llvmpipe, Mesa's software renderer, as a VM without a GPU must. Under software
// emulation a client loads the map for ~4.5 min before it enters the game, and its screen
// lags behind: the screenshots show the loading screen ("awaiting snapshot") while the
// server's log has both players in.
import { defineModule, defineTest } from "vmrig";

// Root's autoexec.cfg (the session runs as root), read before the renderer starts: every
// frame is drawn by llvmpipe on an emulated CPU, so the window is small, textures coarse,
// frames few, and there is no sound card to open.
const autoexec = [
  "seta r_mode 0",
  "seta r_picmip 3",
  "seta r_texturebits 16",
  "seta com_maxfps 10",
  "seta s_initsound 0",
  "seta cl_allowDownload 0",
].join("\n");

const client = defineModule({
  services: { xserver: { enable: true, windowManager: { icewm: { enable: true } } } },
  environment: {
    systemPackages: ["openarena", "libgl1-mesa-dri"],
    etc: { "openarena/autoexec.cfg": { text: autoexec + "\n" } },
  },
  systemd: {
    tmpfiles: {
      rules: [
        // Debian installs the client as /usr/games/openarena, on no root's PATH
        "L+ /usr/local/bin/openarena - - - - /usr/games/openarena",
        "d /root/.openarena/baseoa 0755 root root -",
        "C /root/.openarena/baseoa/autoexec.cfg - - - - /etc/openarena/autoexec.cfg",
      ],
    },
  },
  virtualisation: { memorySize: 1536 },
});

export default defineTest({
  name: "openarena",
  nodes: {
    server: {
      services: {
        openarena: {
          enable: true,
          extraFlags: ["+set g_gametype 0", "+map oa_dm7", "+addbot Angelyss", "+addbot Arachna"],
          openPorts: true,
        },
      },
    },

    client1: client,
    client2: client,
  },
  testScript: `
    start_all()

    server.wait_for_unit("openarena")
    server.wait_until_succeeds("ss --numeric --udp --listening | grep -q 27960")

    client1.wait_for_x()
    client2.wait_for_x()

    client1.execute("openarena +set r_fullscreen 0 +set name Foo +connect server >&2 &")
    client2.execute("openarena +set r_fullscreen 0 +set name Bar +connect server >&2 &")

    server.wait_until_succeeds(
        "journalctl -u openarena -e | grep -q 'Foo.*entered the game'"
    )
    server.wait_until_succeeds(
        "journalctl -u openarena -e | grep -q 'Bar.*entered the game'"
    )

    server.sleep(10)  # wait for a while to get a nice screenshot

    client1.screenshot("screen_client1_1")
    client2.screenshot("screen_client2_1")

    client1.block()

    server.sleep(10)

    client1.screenshot("screen_client1_2")
    client2.screenshot("screen_client2_2")

    client1.unblock()

    server.sleep(10)

    client1.screenshot("screen_client1_3")
    client2.screenshot("screen_client2_3")
  `,
});
