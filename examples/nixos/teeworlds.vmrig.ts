// nixpkgs nixos/tests/teeworlds.nix, its Python test script verbatim (SPEC §8, §11): a
// Teeworlds server and two graphical clients that join it; the server's log shows both
// players entering a team, and each client keeps a screenshot.
// Adapted, the nodes only: nixpkgs' common/x11.nix is services.xserver with IceWM and the
// session logged in as root, which is what vmrig does without autoLogin. Debian installs
// the client as /usr/games/teeworlds, so `teeworlds` is a symlink in /usr/local/bin; it
// draws with OpenGL, which Mesa's software renderer (llvmpipe) gives a VM without a GPU.
import { defineModule, defineTest } from "vmrig";

// Root's client settings (the session runs as root), written before the first start. Under
// software emulation every frame is drawn by llvmpipe on an emulated CPU, and a client that
// spends more than 10 s between two network pumps is dropped by the server (Teeworlds 0.7's
// "Too weak connection (not acked for 10 seconds)"): without these both clients were dropped
// before they joined. With them the network loop runs while a frame is still being drawn
// (`gfx_asyncrender`), and few, small frames are drawn. The screen lags far behind the game:
// the screenshots show the client's loading screen, while the server has both players in.
const clientSettings = [
  "gfx_screen_width 400",
  "gfx_screen_height 300",
  "gfx_fullscreen 0",
  "gfx_borderless 0",
  "gfx_texture_quality 0",
  "gfx_high_detail 0",
  "gfx_fsaa_samples 0",
  "gfx_vsync 0",
  "gfx_finish 0",
  // the network loop does not wait for a frame llvmpipe is still drawing, and draws few
  "gfx_asyncrender 1",
  "gfx_limitfps 1",
  "gfx_maxfps 5",
  "cl_cpu_throttle 10",
  "cl_skip_start_menu 1",
  "cl_show_welcome 0",
  "snd_enable 0",
  "cl_show_menu_map 0",
  'cl_menu_map ""',
].join("\n");

const client = defineModule({
  services: { xserver: { enable: true, windowManager: { icewm: { enable: true } } } },
  environment: {
    systemPackages: ["teeworlds", "libgl1-mesa-dri"],
    etc: { "teeworlds/client-settings.cfg": { text: clientSettings + "\n" } },
  },
  systemd: {
    tmpfiles: {
      rules: [
        "L+ /usr/local/bin/teeworlds - - - - /usr/games/teeworlds",
        "d /root/.local/share/teeworlds 0755 root root -",
        "C /root/.local/share/teeworlds/settings07.cfg - - - - /etc/teeworlds/client-settings.cfg",
      ],
    },
  },
  virtualisation: { memorySize: 1536 },
});

export default defineTest({
  name: "teeworlds",
  nodes: {
    server: {
      services: {
        teeworlds: {
          enable: true,
          openPorts: true,
        },
      },
    },

    client1: client,
    client2: client,
  },
  testScript: `
    start_all()

    server.wait_for_unit("teeworlds.service")
    server.wait_until_succeeds("ss --numeric --udp --listening | grep -q 8303")

    client1.wait_for_x()
    client2.wait_for_x()

    client1.execute("teeworlds 'player_name Alice;connect server' >&2 &")
    server.wait_until_succeeds(
        'journalctl -u teeworlds -e | grep --extended-regexp -q "team_join player=\\'[0-9]:Alice"'
    )

    client2.execute("teeworlds 'player_name Bob;connect server' >&2 &")
    server.wait_until_succeeds(
        'journalctl -u teeworlds -e | grep --extended-regexp -q "team_join player=\\'[0-9]:Bob"'
    )

    server.sleep(10)  # wait for a while to get a nice screenshot

    client1.screenshot("screen_client1")
    client2.screenshot("screen_client2")
  `,
});
