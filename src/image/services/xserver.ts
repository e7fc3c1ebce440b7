import type { EvaluatedConfig } from "../../config/eval.js";
import { configError } from "../../util/errors.js";
import { enable, file, unit, type Patch } from "../patch.js";

/**
 * services.xserver (SPEC §8), as NixOS's display manager does it: Xorg runs as root on
 * :0 / vt7 from `display-manager.service`, and the session runs on top of it as the
 * auto-login user (root otherwise).
 *
 * Why each piece is there (each one was a keyboard that did not type):
 * - `xserver-xorg-core` depends on no input driver; without `xserver-xorg-input-libinput`
 *   (and its catch-all `40-libinput.conf`) X starts and ignores every keyboard.
 * - Xorg is started as root, not through Debian's `Xorg.wrap` (which refuses non-console
 *   users) and not rootless (which cannot open /dev/input without a logind seat).
 * - The unit is `Type=notify` and ready only once the session's window manager holds the
 *   screen, so `graphical.target` — and with it a boot snapshot — means a usable desktop.
 */

/** The X packages every graphical node gets (the window manager's come on top). */
const XSERVER_PACKAGES = [
  "xserver-xorg-core",
  "xserver-xorg-input-libinput",
  // xwininfo (getWindowNames), xprop (the display manager's readiness), xdpyinfo
  "x11-utils",
  // `xinput list` shows whether X has a keyboard; xdotool focuses and finds windows (NixOS tests use both)
  "xinput",
  "xdotool",
  // xset, xrandr: what NixOS tests reach for
  "x11-xserver-utils",
  // legible text for OCR: core fonts for xterm and friends, DejaVu for Xft clients
  "xfonts-base",
  "fonts-dejavu-core",
];

/**
 * GDM and GNOME. Recommends are not installed, so what GNOME only recommends but a test
 * needs is named: Mesa's EGL and GL drivers (llvmpipe: mutter draws nothing without
 * them), the session's D-Bus at /run/user/UID/bus, Xwayland for X clients, gdbus.
 */
const GNOME_PACKAGES = [
  "gdm3",
  "gnome-session",
  "gnome-shell",
  "dbus-user-session",
  "libpam-systemd",
  "libegl-mesa0",
  "libgl1-mesa-dri",
  "libgbm1",
  "xwayland",
  "libglib2.0-bin",
  "x11-utils",
  "fonts-cantarell",
  "fonts-dejavu-core",
];

/** GNOME on Xorg (`gdm.wayland = false`): the X server, its input driver, and the X11 session's entry. */
const GNOME_XORG_PACKAGES = ["xserver-xorg-core", "xserver-xorg-input-libinput", "gnome-session-xsession"];

/** Packages a node's services.xserver needs. */
export function xserverPackages(config: EvaluatedConfig): string[] {
  const x = config.services.xserver;
  if (!x.enable) return [];
  if (x.displayManager.gdm.enable)
    return [...GNOME_PACKAGES, ...(x.displayManager.gdm.wayland ? [] : GNOME_XORG_PACKAGES)];
  const pkgs = [...XSERVER_PACKAGES];
  // No DRM driver in the cloud kernel: Xorg drives QEMU's VGA through the VESA BIOS.
  if (config.boot.kernelPackages === "cloud") pkgs.push("xserver-xorg-video-vesa");
  if (x.windowManager.icewm.enable) pkgs.push("icewm");
  return pkgs;
}

/**
 * The account the session runs as: the auto-login user, else root (vmrig's X session) or
 * GDM's own account (its greeter's gnome-shell).
 */
function sessionUser(config: EvaluatedConfig): string {
  const x = config.services.xserver;
  const auto = x.displayManager.autoLogin;
  if (auto.enable && auto.user) return auto.user;
  return x.displayManager.gdm.enable ? "Debian-gdm" : "root";
}

/** Mistakes caught before anything is built: each would otherwise be a desktop that never comes up. */
function checkXserver(config: EvaluatedConfig): void {
  const x = config.services.xserver;
  checkGnome(config);
  if (!x.enable) {
    if (x.windowManager.icewm.enable)
      throw configError("services.xserver.windowManager.icewm.enable is set, but services.xserver.enable is not", {
        hint: "a window manager needs the X server: set services.xserver.enable = true",
      });
    if (x.displayManager.autoLogin.enable)
      throw configError("services.xserver.displayManager.autoLogin.enable is set, but services.xserver.enable is not", {
        hint: "set services.xserver.enable = true (for a text console, use services.getty.autoLoginUser)",
      });
    return;
  }
  const auto = x.displayManager.autoLogin;
  if (auto.enable && !auto.user)
    throw configError("services.xserver.displayManager.autoLogin.enable is set without a user", {
      hint: 'name the account: services.xserver.displayManager.autoLogin.user = "alice" (declared in users.users)',
    });
  if (auto.enable && auto.user && auto.user !== "root" && !(auto.user in config.users.users)) {
    const known = Object.keys(config.users.users);
    throw configError(
      `services.xserver.displayManager.autoLogin.user = ${JSON.stringify(auto.user)}: no such user in users.users`,
      {
        hint: known.length
          ? `declared users: ${known.join(", ")}`
          : `declare it: users.users.${auto.user} = { isNormalUser: true }`,
      },
    );
  }
}

/** GDM and GNOME come together here (NixOS would let either pair with others). */
function checkGnome(config: EvaluatedConfig): void {
  const x = config.services.xserver;
  const gdm = x.displayManager.gdm.enable;
  const gnome = x.desktopManager.gnome.enable;
  if (!gdm && !gnome) return;
  const set = gdm ? "services.xserver.displayManager.gdm.enable" : "services.xserver.desktopManager.gnome.enable";
  if (!x.enable)
    throw configError(`${set} is set, but services.xserver.enable is not`, {
      hint: "set services.xserver.enable = true too (as NixOS asks)",
    });
  if (!gnome)
    throw configError("services.xserver.displayManager.gdm.enable is set without a desktop for it to start", {
      hint: "set services.xserver.desktopManager.gnome.enable = true (the only session GDM starts here)",
    });
  if (!gdm)
    throw configError("services.xserver.desktopManager.gnome.enable is set without GDM", {
      hint: "set services.xserver.displayManager.gdm.enable = true: GNOME is started by GDM here",
    });
  if (x.windowManager.icewm.enable)
    throw configError("services.xserver.windowManager.icewm.enable and GNOME are both set", {
      hint: "a node runs one desktop here: GNOME (gdm + gnome) or IceWM on vmrig's own X session, not both",
    });
  if (x.displayManager.sessionCommands)
    throw configError("services.xserver.displayManager.sessionCommands is set on a GNOME node", {
      hint: "sessionCommands run in vmrig's own X session, which GNOME does not use: start a program at login with lib.makeAutostartItem or systemd.user.services",
    });
}

/** /etc/X11/xorg.conf.d/10-vmrig.conf: the adapter's driver, the resolution, the layout, no blanking. */
function xorgConf(config: EvaluatedConfig): string {
  const { x, y } = config.virtualisation.resolution;
  const { xkb } = config.services.xserver;
  const mode = `${x}x${y}`;
  const kb = [
    `  Option "XkbLayout" "${xkb.layout}"`,
    xkb.variant && `  Option "XkbVariant" "${xkb.variant}"`,
    xkb.options && `  Option "XkbOptions" "${xkb.options}"`,
  ].filter(Boolean);
  const driver = config.boot.kernelPackages === "cloud" ? "vesa" : "modesetting";
  return [
    "# generated by vmrig from services.xserver and virtualisation.resolution",
    'Section "ServerFlags"',
    '  Option "BlankTime" "0"',
    '  Option "StandbyTime" "0"',
    '  Option "SuspendTime" "0"',
    '  Option "OffTime" "0"',
    "EndSection",
    'Section "Device"',
    '  Identifier "vmrig-video"',
    `  Driver "${driver}"`,
    // no GPU: glamor would only start llvmpipe to draw what the shadow framebuffer draws faster
    ...(driver === "modesetting" ? ['  Option "AccelMethod" "none"'] : []),
    "EndSection",
    'Section "Monitor"',
    '  Identifier "vmrig-monitor"',
    `  Option "PreferredMode" "${mode}"`,
    "EndSection",
    'Section "Screen"',
    '  Identifier "vmrig-screen"',
    '  Device "vmrig-video"',
    '  Monitor "vmrig-monitor"',
    "  DefaultDepth 24",
    '  SubSection "Display"',
    "    Depth 24",
    `    Modes "${mode}"`,
    "  EndSubSection",
    "EndSection",
    'Section "InputClass"',
    '  Identifier "vmrig-keyboard"',
    '  MatchIsKeyboard "on"',
    ...kb,
    "EndSection",
    "",
  ].join("\n");
}

/** Run as root by display-manager.service. */
function displayManagerScript(config: EvaluatedConfig): string {
  const user = sessionUser(config);
  const wm = config.services.xserver.windowManager.icewm.enable;
  return `#!/bin/bash
# generated by vmrig from services.xserver: Xorg as root on :0 (vt7), then the session as ${user};
# ready (sd_notify) once ${wm ? "the window manager holds the screen" : "the session has started"}.
set -u
say() { echo "display-manager: $*" >&2; }
rm -f /tmp/.X0-lock /tmp/.X11-unix/X0
${
  config.boot.kernelPackages === "cloud"
    ? ""
    : `# Xorg finds no screen if it starts before udev has loaded the display adapter's DRM driver.
deadline=$((SECONDS + 60))
until [ -e /dev/dri/card0 ]; do
  [ "$SECONDS" -lt "$deadline" ] || { say "no DRM device (/dev/dri/card0) after 60 s: is the bochs module loaded? $(lsmod | grep -c bochs)"; break; }
  sleep 0.1
done`
}
# Xorg (and anything in the session) would tell systemd "ready" itself as soon as it takes
# clients: only this script may, once the session holds the screen.
notify=$NOTIFY_SOCKET
unset NOTIFY_SOCKET
/usr/lib/xorg/Xorg :0 vt7 -nolisten tcp -noreset -s 0 -dpms -logfile /var/log/Xorg.0.log &
xorg=$!
# until PRED holds, ≤ SECS seconds, or fail with WHAT (the log's errors follow)
until_() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    kill -0 "$xorg" 2>/dev/null || { say "Xorg exited: $what"; grep -E '\\(EE\\)' /var/log/Xorg.0.log >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { say "$what within $secs s"; grep -E '\\(EE\\)' /var/log/Xorg.0.log >&2; exit 1; }
    sleep 0.2
  done
}
x_answers() { xprop -display :0 -root -len 0 _XKB_RULES_NAMES >/dev/null 2>&1; }
until_ 120 "X did not answer on :0" x_answers
# No key autorepeat: under emulation a busy guest can read a key's release after X's repeat
# delay, and a typed URL gets doubled letters. A test's keys are QEMU's press-hold-release.
xset -display :0 r off || say "xset r off failed: keys may autorepeat"
runuser -l ${user} -c 'exec /etc/vmrig/xsession' </dev/null &
${
  wm
    ? `wm_holds_screen() { xprop -display :0 -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q 'window id'; }
until_ 120 "the window manager did not take the screen" wm_holds_screen`
    : ""
}
NOTIFY_SOCKET=$notify systemd-notify --ready
say "X is up on :0, session of ${user} started"
wait "$xorg"
`;
}

function xsessionScript(config: EvaluatedConfig): string {
  const x = config.services.xserver;
  return `#!/bin/sh
# generated by vmrig: the X session (services.xserver), run as ${sessionUser(config)} with a login environment
export DISPLAY=:0
${x.displayManager.sessionCommands}
${x.windowManager.icewm.enable ? "exec icewm" : "exec sleep infinity"}
`;
}

/** /etc/gdm3/daemon.conf: Wayland or not, and who is logged in at boot. */
function gdmConf(config: EvaluatedConfig): string {
  const x = config.services.xserver;
  const auto = x.displayManager.autoLogin;
  return [
    "# generated by vmrig from services.xserver.displayManager",
    "[daemon]",
    `WaylandEnable=${x.displayManager.gdm.wayland}`,
    ...(auto.enable && auto.user ? ["AutomaticLoginEnable=true", `AutomaticLogin=${auto.user}`] : []),
    "",
    "[security]",
    "",
    "[xdmcp]",
    "",
    "[chooser]",
    "",
    "[debug]",
    "",
  ].join("\n");
}

/** A command prefix (bash) that runs what follows as `user`, with its session's runtime dir and D-Bus. */
function inSession(user: string): string {
  return `runuser -u ${user} -- env XDG_RUNTIME_DIR=/run/user/$(id -u ${user}) DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$(id -u ${user})/bus`;
}

/**
 * Run by vmrig-desktop-ready.service, ordered before graphical.target: GDM is "started" at
 * once, the desktop a minute later under TCG. The boot ends (and its snapshot is saved)
 * once the session's gnome-shell unit is active: gnome-shell sends READY=1 when its startup
 * is complete. It also links the session's
 * Xwayland cookie to /run/vmrig/xauthority, the XAUTHORITY of backdoor commands.
 */
function gnomeReadyScript(config: EvaluatedConfig): string {
  const user = sessionUser(config);
  const shellUnit = `org.gnome.Shell@${config.services.xserver.displayManager.gdm.wayland ? "wayland" : "x11"}.service`;
  return `#!/bin/bash
# generated by vmrig from services.xserver.desktopManager.gnome: ready once gnome-shell runs for ${user}
set -u
say() { echo "vmrig-desktop-ready: $*" >&2; }
uid=$(id -u ${user})
# gnome-shell tells its unit it is ready once its startup (first frame, panel, overview) is complete
shell_up() {
  [ "$(${inSession(user)} systemctl --user is-active ${shellUnit} 2>/dev/null)" = active ]
}
deadline=$((SECONDS + 600))
until shell_up; do
  if ! systemctl -q is-active display-manager.service; then
    say "GDM is $(systemctl is-active display-manager.service): GNOME will not come up"
    journalctl -b -u display-manager.service -n 20 --no-pager -o cat >&2
    exit 1
  fi
  [ "$SECONDS" -lt "$deadline" ] || { say "${shellUnit} of ${user} was not ready after 600 s"; exit 1; }
  sleep 1
done
mkdir -p /run/vmrig
for auth in /run/user/$uid/.mutter-Xwaylandauth.*; do
  [ -e "$auth" ] && ln -sfn "$auth" /run/vmrig/xauthority
done
say "gnome-shell is up for ${user}"
`;
}

/**
 * `/usr/lib/vmrig/gnome-eval JS`: gnome-shell's org.gnome.Shell.Eval in the session, as
 * the seeds call it (answered only with --unsafe-mode); waitForWindow reads windows with it.
 * It waits up to 50 s for an answer (gdbus's default is 25): under TCG a shell busy starting
 * an application is silent that long, and a machine call's command has 60 s.
 */
function gnomeEvalScript(config: EvaluatedConfig): string {
  const user = sessionUser(config);
  return `#!/bin/bash
# generated by vmrig: evaluate JavaScript in ${user}'s gnome-shell (org.gnome.Shell.Eval)
exec ${inSession(user)} \\
  gdbus call --session --timeout 50 --dest org.gnome.Shell --object-path /org/gnome/Shell --method org.gnome.Shell.Eval "$1"
`;
}

/**
 * GNOME starts in the Activities overview, and under TCG it stays there: a window that
 * opens later (an autostart item's) is shown in the overview, unfocused. The extension
 * leaves the overview once the shell's startup is complete, as a user would press Escape.
 */
const EXTENSION = "vmrig-desktop@vmrig";
const EXTENSION_METADATA = JSON.stringify(
  {
    uuid: EXTENSION,
    name: "vmrig test desktop",
    description: "Start on the desktop, not in the overview (vmrig test machines)",
    "shell-version": ["45", "46", "47", "48", "49"],
  },
  null,
  2,
);
const EXTENSION_JS = `// generated by vmrig: start on the desktop, not in the overview
import * as Main from 'resource:///org/gnome/shell/ui/main.js';
import {Extension} from 'resource:///org/gnome/shell/extensions/extension.js';

export default class VmrigDesktop extends Extension {
    enable() {
        const leave = () => Main.overview.hide();
        if (Main.layoutManager._startingUp)
            this._id = Main.layoutManager.connect('startup-complete', leave);
        else
            leave();
    }

    disable() {
        if (this._id)
            Main.layoutManager.disconnect(this._id);
        this._id = 0;
    }
}
`;

function renderGnome(config: EvaluatedConfig, patch: Patch): void {
  patch.files.push(
    file("/etc/gdm3/daemon.conf", gdmConf(config)),
    file("/usr/lib/vmrig/gnome-eval", gnomeEvalScript(config), 0o755),
    file("/usr/lib/vmrig/desktop-ready", gnomeReadyScript(config), 0o755),
    file(
      "/etc/systemd/system/vmrig-desktop-ready.service",
      unit({
        Unit: {
          Description: "vmrig: the GNOME session is up (services.xserver.desktopManager.gnome)",
          After: "display-manager.service",
          Before: "graphical.target",
        },
        Service: {
          Type: "oneshot",
          RemainAfterExit: "yes",
          ExecStart: "/usr/lib/vmrig/desktop-ready",
          TimeoutStartSec: 700,
        },
      }),
    ),
  );
  enable(patch, "vmrig-desktop-ready.service", "graphical.target");
  patch.symlinks.push(
    { path: "/etc/systemd/system/display-manager.service", target: "/usr/lib/systemd/system/gdm.service" },
    { path: "/etc/systemd/system/default.target", target: "/usr/lib/systemd/system/graphical.target" },
  );
  renderTestSession(patch);
}

/**
 * What makes GNOME's session fit for a test machine: no screen blanking (GNOME's idle blank
 * turns QEMU's display off mid-test), no animations (each one is seconds of llvmpipe under
 * TCG), the desktop rather than the overview at login (the extension), and no file indexer
 * (on a fresh home it fails and restarts every few seconds, taking CPU the session needs).
 * Set through gsettings at login: dconf's system databases would need compiling in the image.
 */
function renderTestSession(patch: Patch): void {
  const settings = "/etc/systemd/user/vmrig-gnome-settings.service";
  patch.files.push(
    file(`/usr/share/gnome-shell/extensions/${EXTENSION}/metadata.json`, EXTENSION_METADATA),
    file(`/usr/share/gnome-shell/extensions/${EXTENSION}/extension.js`, EXTENSION_JS),
    file(
      settings,
      unit({
        Unit: {
          Description: "vmrig: GNOME settings for a test machine (no blanking, no animations)",
          Before: "gnome-session-pre.target",
        },
        Service: {
          Type: "oneshot",
          ExecStart: [
            "/usr/bin/gsettings set org.gnome.desktop.session idle-delay 0",
            "/usr/bin/gsettings set org.gnome.desktop.screensaver lock-enabled false",
            "/usr/bin/gsettings set org.gnome.desktop.interface enable-animations false",
            `/usr/bin/gsettings set org.gnome.shell enabled-extensions "['${EXTENSION}']"`,
          ],
        },
      }),
    ),
  );
  enable(patch, "vmrig-gnome-settings.service", "gnome-session-pre.target", settings, "/etc/systemd/user");
  patch.symlinks.push({ path: "/etc/systemd/user/localsearch-3.service", target: "/dev/null" });
}

export function renderXserver(config: EvaluatedConfig, patch: Patch): void {
  checkXserver(config);
  if (!config.services.xserver.enable) return;
  if (config.services.xserver.displayManager.gdm.enable) return renderGnome(config, patch);
  patch.files.push(
    file("/etc/X11/xorg.conf.d/10-vmrig.conf", xorgConf(config)),
    file("/usr/lib/vmrig/display-manager", displayManagerScript(config), 0o755),
    file("/etc/vmrig/xsession", xsessionScript(config), 0o755),
    file(
      "/etc/systemd/system/display-manager.service",
      unit({
        Unit: {
          Description: "vmrig display manager: X11 on :0 (services.xserver)",
          After: "systemd-user-sessions.service systemd-logind.service systemd-udev-trigger.service",
          Conflicts: "getty@tty7.service",
        },
        Service: {
          Type: "notify",
          NotifyAccess: "all",
          ExecStart: "/usr/lib/vmrig/display-manager",
          TimeoutStartSec: 300,
        },
      }),
    ),
  );
  enable(patch, "display-manager.service", "graphical.target");
  patch.symlinks.push({
    path: "/etc/systemd/system/default.target",
    target: "/usr/lib/systemd/system/graphical.target",
  });
}
