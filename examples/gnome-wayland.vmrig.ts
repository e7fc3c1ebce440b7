// Seed 004's "Wayland application testing (GNOME + Firefox)": GNOME on Wayland with GDM
// logging alice in, Firefox started by an autostart entry, gnome-shell in unsafe mode through
// a user unit override, and the focused window's wm_class read through org.gnome.Shell.Eval.
// The script is the seed's, verbatim. Adapted, the node only: Debian's Firefox is
// `firefox-esr` (its desktop entry too), and gnome-shell is /usr/bin/gnome-shell.
import { defineModule, defineTest, lib } from "vmrig";

/** The seed's node (test/vm/gnome.vm.test.ts boots it too, sharing its image and boot snapshot). */
export const gnome = defineModule({
  // Desktop with autologin
  services: {
    xserver: {
      enable: true,
      displayManager: { gdm: { enable: true }, autoLogin: { enable: true, user: "alice" } },
      desktopManager: { gnome: { enable: true } },
    },
  },
  users: {
    users: {
      alice: {
        isNormalUser: true,
        extraGroups: ["wheel"],
        uid: 1000, // Pin UID for dbus path
      },
    },
  },
  // Auto-start the application after login
  environment: {
    systemPackages: [lib.makeAutostartItem({ name: "firefox-esr", package: "firefox-esr" })],
    // Not in the seed: under software emulation every Firefox process and every GL frame
    // costs seconds. One content process, software WebRender (no llvmpipe GL), no
    // first-run pages (as examples/firefox.vmrig.ts).
    etc: {
      "firefox-esr/vmrig.js": {
        text: [
          'pref("fission.autostart", false);',
          'pref("dom.ipc.processCount", 1);',
          'pref("gfx.webrender.software", true);',
          'pref("browser.aboutwelcome.enabled", false);',
          'pref("datareporting.policy.firstRunURL", "");',
          'pref("browser.startup.homepage_override.mstone", "ignore");',
          "",
        ].join("\n"),
      },
    },
  },
  // Enable gnome-shell Eval API (unsafe mode)
  systemd: {
    user: {
      services: {
        "org.gnome.Shell@wayland": {
          serviceConfig: {
            ExecStart: [
              "", // Clear default ExecStart
              "/usr/bin/gnome-shell --unsafe-mode",
            ],
          },
        },
      },
    },
  },
  // GNOME and Firefox under software rendering
  virtualisation: { memorySize: 3072, resolution: { x: 800, y: 600 } },
});

export default defineTest({
  name: "gnome-wayland",
  nodes: { machine: gnome },
  testScript: ({ nodes }) => {
    const user = nodes.machine.config.users.users.alice!; // declared above
    const bus = `DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/${user.uid}/bus`;
    const gdbus = `${bus} gdbus`;
    const su = (command: string) => `su - ${user.name} -c '${command}'`;
    const gseval = "call --session -d org.gnome.Shell -o /org/gnome/Shell -m org.gnome.Shell.Eval";
    const wmClass = su(`${gdbus} ${gseval} global.display.focus_window.wm_class`);
    return `
  machine.wait_until_succeeds("${wmClass} | grep -q 'firefox'")
  machine.sleep(20)
  machine.screenshot("screen")
`;
  },
});
