import { DEFAULT_TIMEOUT, toRegExp, type MachineCore, type Pattern } from "./core.js";
import { waitFor } from "./waiting.js";

/**
 * X11 (SPEC §8), with NixOS's semantics: `waitForX` until the display manager is ready
 * (NixOS: "Reached target Current graphical" and the socket), `getWindowNames` from
 * `xwininfo -root -tree`, `waitForWindow` polling it. Each failure says what the guest
 * shows: a display manager that failed, Xorg's errors, an X server with no keyboard.
 */

const NOT_GRAPHICAL = "no-xserver";

/** On a GNOME machine (services.xserver.desktopManager.gnome): gnome-shell's Eval, as the session's user. */
const GNOME_EVAL = "/usr/lib/vmrig/gnome-eval";

/**
 * One round trip: `ready`, NOT_GRAPHICAL, or what is still missing. A failed display
 * manager prints `failed` first, then its diagnosis.
 */
const X_STATE = String.raw`
if [ -x ${GNOME_EVAL} ]; then
  # GNOME: ready once its shell has started (vmrig-desktop-ready) and Xwayland's socket is there
  state=$(systemctl is-active vmrig-desktop-ready.service || true)
  if [ "$state" = active ] && [ -S /tmp/.X11-unix/X0 ]; then echo ready; exit 0; fi
  echo "vmrig-desktop-ready.service is $state"; exit 0
fi
if [ ! -x /usr/lib/vmrig/display-manager ]; then echo ${NOT_GRAPHICAL}; exit 0; fi
state=$(systemctl is-active display-manager.service || true)
if [ "$state" = active ] && [ -S /tmp/.X11-unix/X0 ] && xprop -display :0 -root -len 0 _XKB_RULES_NAMES >/dev/null 2>&1; then
  echo ready; exit 0
fi
echo "display-manager.service is $state"`;

/** What the guest's X looks like, for a report: the unit's last lines, Xorg's errors, its input devices. */
const X_DIAGNOSIS = String.raw`
if [ -x ${GNOME_EVAL} ]; then
  journalctl -b -u display-manager.service -u vmrig-desktop-ready.service -n 15 --no-pager -o cat 2>/dev/null | sed 's/^/  /'
  journalctl -b _COMM=gnome-shell -n 10 --no-pager -o cat 2>/dev/null | sed 's/^/  gnome-shell: /'
  exit 0
fi
journalctl -b -u display-manager.service -n 15 --no-pager -o cat 2>/dev/null | sed 's/^/  /'
log=/var/log/Xorg.0.log
if [ -e $log ]; then
  grep -E '\(EE\)' $log | grep -v 'warning, (EE)' | tail -n 8 | sed 's/^/  Xorg.0.log: /'
  if ! grep -q "Using input driver 'libinput'" $log; then
    echo "X has no keyboard: Xorg.0.log shows no input device driven by libinput (is xserver-xorg-input-libinput installed, and udev running?)"
    grep -E 'No input driver' $log | tail -n 3 | sed 's/^/  Xorg.0.log: /'
  fi
else
  echo "Xorg has not written /var/log/Xorg.0.log: it did not start"
fi`;

function notGraphical(m: MachineCore, call: string, location: string | undefined): Error {
  return m.fail(`${m.name} has no X server`, call, {
    location,
    hint: "set services.xserver.enable = true in its node config (and windowManager.icewm.enable for a window manager)",
  });
}

export async function waitForX(m: MachineCore, location: string | undefined, timeout = DEFAULT_TIMEOUT): Promise<void> {
  const call = "waitForX()";
  await m.qemu(call, location); // a container has no X: say so, rather than "no X server"
  return waitFor(
    m,
    { call, heading: "waiting for the X11 server", what: "the X server on :0 to accept clients", timeout, location },
    async (lastTry) => {
      const state = (await m.run(X_STATE, call, location, 60)).stdout.trim();
      if (state === NOT_GRAPHICAL) return { done: false, fatal: notGraphical(m, call, location) };
      if (state === "ready") return { done: true };
      const failed = state.endsWith(" failed");
      if (!failed && !lastTry) return { done: false, last: state };
      const diagnosis = (await m.run(X_DIAGNOSIS, call, location, 60)).stdout.trimEnd();
      const last = `${state}\n${diagnosis}`;
      return failed
        ? {
            done: false,
            fatal: m.fail(`the display manager failed (${state}): X will not come up`, call, {
              location,
              output: last,
              hint: "Xorg's whole log is /var/log/Xorg.0.log in the guest (and in the result folder)",
            }),
          }
        : { done: false, last };
    },
  );
}

/**
 * Printed before GNOME's answer; gnome-shell's refusal to evaluate (no unsafe mode) exits with
 * GNOME_REFUSED, no answer at all (gdbus's timeout: a shell busy starting an application
 * under TCG stops answering for tens of seconds) with GNOME_SILENT.
 */
const GNOME_WINDOWS = "gnome-windows:";
const GNOME_REFUSED = 4;
const GNOME_SILENT = 5;

// On GNOME (Wayland: no X tree to read) the titles come from gnome-shell itself, URI-encoded
// so that gdbus's quoting of the answer cannot garble them.
const WINDOW_NAMES = String.raw`if [ -x ${GNOME_EVAL} ]; then
  out=$(${GNOME_EVAL} 'encodeURIComponent(JSON.stringify(global.get_window_actors().map(a => a.meta_window.get_title() ?? ""))).replace(/\x27/g, "%27")' 2>&1) || { echo "$out" >&2; exit ${GNOME_SILENT}; }
  case $out in "(true, "*) echo "${GNOME_WINDOWS}$out"; exit 0 ;; *) echo "$out" >&2; exit ${GNOME_REFUSED} ;; esac
fi
[ -x /usr/lib/vmrig/display-manager ] || { echo ${NOT_GRAPHICAL} >&2; exit 3; }
xwininfo -root -tree | sed 's/.*0x[0-9a-f]* "\([^"]*\)".*/\1/; t; d'`;

/** The titles in gdbus's `(true, '"%5B%22Title%22%5D"')`. */
function gnomeTitles(answer: string): string[] | undefined {
  const m = /^\(true, '"([^'"]*)"'\)$/.exec(answer.trim());
  if (!m?.[1]) return undefined;
  const titles: unknown = JSON.parse(decodeURIComponent(m[1]));
  return Array.isArray(titles) ? titles.map(String).filter((t) => t !== "") : undefined;
}

function gnomeRefused(m: MachineCore, call: string, location: string | undefined, answer: string): Error {
  return m.fail("gnome-shell would not list its windows (org.gnome.Shell.Eval refused)", call, {
    location,
    output: answer,
    hint:
      "GNOME answers Eval only in unsafe mode, as in NixOS: run the shell with --unsafe-mode, " +
      'systemd.user.services["org.gnome.Shell@wayland"].serviceConfig.ExecStart = ["", "/usr/bin/gnome-shell --unsafe-mode"]',
  });
}

/** The window names, or why xwininfo (or gnome-shell) could not list them (X not up yet, say). */
async function windowNames(
  m: MachineCore,
  call: string,
  location: string | undefined,
): Promise<{ names: string[] } | { error: string; gnome?: true }> {
  await m.qemu(call, location);
  const r = await m.run(WINDOW_NAMES, call, location, 60);
  if (r.status === 3 && r.stderr.includes(NOT_GRAPHICAL)) throw notGraphical(m, call, location);
  if (r.status === GNOME_REFUSED) throw gnomeRefused(m, call, location, r.stderr.trim());
  if (r.status === GNOME_SILENT) return { error: `gnome-shell did not answer: ${r.stderr.trim()}`, gnome: true };
  if (r.status !== 0) return { error: r.stderr.trim() || `xwininfo exited with status ${r.status}` };
  if (r.stdout.startsWith(GNOME_WINDOWS)) {
    const names = gnomeTitles(r.stdout.slice(GNOME_WINDOWS.length));
    return names ? { names } : { error: `gnome-shell answered ${r.stdout.slice(GNOME_WINDOWS.length).trim()}` };
  }
  return { names: r.stdout.split("\n").filter((l) => l !== "") };
}

/** NixOS's get_window_names: the names of every window on :0. */
export async function getWindowNames(m: MachineCore, location: string | undefined): Promise<string[]> {
  const call = "getWindowNames()";
  const r = await windowNames(m, call, location);
  if ("names" in r) return r.names;
  if (r.gnome) {
    throw m.fail("gnome-shell did not list its windows", call, {
      location,
      output: r.error,
      hint: "a shell busy starting an application (under software emulation) stops answering D-Bus for tens of seconds: `waitForWindow` keeps asking until its timeout",
    });
  }
  throw m.fail("xwininfo could not list the windows on :0", call, {
    location,
    output: r.error,
    hint: "is X up? `await machine.waitForX()` first",
  });
}

export function waitForWindow(
  m: MachineCore,
  location: string | undefined,
  pattern: Pattern,
  timeout = DEFAULT_TIMEOUT,
): Promise<void> {
  const re = toRegExp(pattern);
  const call = `waitForWindow(${re})`;
  return waitFor(
    m,
    { call, heading: `waiting for a window matching ${re}`, what: `a window matching ${re}`, timeout, location },
    async () => {
      const r = await windowNames(m, call, location);
      if ("error" in r)
        return { done: false, last: r.gnome ? r.error : `xwininfo could not list the windows: ${r.error}` };
      return {
        done: r.names.some((n) => re.test(n)),
        last: `the windows on :0 are: ${r.names.map((n) => JSON.stringify(n)).join(", ") || "(none)"}`,
      };
    },
  );
}
