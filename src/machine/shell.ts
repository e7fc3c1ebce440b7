import { shown, type MachineCore, type Terminal } from "./core.js";
import { shellQuote } from "../util/proc.js";

/** Ctrl-]: leaves shell() without ending the guest's shell by hand (telnet's escape). */
const DETACH = 0x1d;

function processTerminal(): Terminal {
  const stdin = process.stdin;
  const wasRaw = stdin.isTTY ? stdin.isRaw : false;
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.resume();
  return {
    input: stdin,
    output: process.stdout,
    ...(process.stdout.columns ? { columns: process.stdout.columns, rows: process.stdout.rows } : {}),
    release: () => {
      if (stdin.isTTY) stdin.setRawMode(wasRaw);
      stdin.pause();
    },
  };
}

/**
 * One backdoor command runs `script`, which gives a login bash a real pty in the guest
 * attached to the `vmrig.shell` channel; raw keystrokes go in and the screen comes out
 * until the shell exits, or Ctrl-] kills its process group.
 */
export async function shell(m: MachineCore, location: string | undefined): Promise<void> {
  const g = await m.up();
  const term = (m.ctx.terminal ?? processTerminal)();
  const { output } = term;
  const sock = g.shell;
  const size = term.columns && term.rows ? `stty rows ${term.rows} cols ${term.columns}; ` : "";
  const termName = /^[\w.+-]+$/.test(process.env.TERM ?? "") ? process.env.TERM! : "xterm";
  const inner = `${size}export TERM=${termName}; infocmp >/dev/null 2>&1 || export TERM=xterm; cd /root; exec bash -l`;
  // attach_port: the backdoor's helper (guest/backdoor) that puts stdio on a channel
  const cmd = `attach_port vmrig.shell script -qfec ${shellQuote(inner)} /dev/null`;
  output.write(`[vmrig: root shell on ${m.name}; exit or Ctrl-D to leave, Ctrl-] to detach]\r\n`);
  const toGuest = (chunk: Buffer | string) => {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    const at = b.indexOf(DETACH);
    if (at >= 0) {
      if (at > 0) sock.write(b.subarray(0, at));
      g.backdoor.interrupt();
      return;
    }
    sock.write(b);
  };
  const toUser = (chunk: Buffer) => output.write(chunk);
  term.input.on("data", toGuest);
  sock.on("data", toUser);
  try {
    // No timeout: the shell lasts as long as the user wants it.
    const r = await m.run(cmd, "shell()", location, Infinity);
    if (r.status !== 0 && r.status !== 137 && r.stderr.trim()) {
      throw m.fail("the shell could not start", "shell()", {
        command: cmd,
        status: r.status,
        output: shown(r),
        location,
      });
    }
  } finally {
    term.input.off("data", toGuest);
    sock.off("data", toUser);
    term.release?.();
    output.write(`\r\n[vmrig: left the shell on ${m.name}]\r\n`);
  }
}
