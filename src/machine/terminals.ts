import { DEFAULT_TIMEOUT, toRegExp, type MachineCore, type Pattern } from "./core.js";
import { waitFor } from "./waiting.js";
import { tail } from "../util/errors.js";

export async function sendConsole(m: MachineCore, location: string | undefined, text: string): Promise<void> {
  const vm = await m.qemu("sendConsole()", location);
  vm.consoleSocket.write(text);
}

/** Until the serial console (anything since boot) matches; resolves with the match. */
export async function waitForConsoleText(
  m: MachineCore,
  location: string | undefined,
  pattern: Pattern,
  timeout = DEFAULT_TIMEOUT,
): Promise<string> {
  const re = toRegExp(pattern);
  const g = await m.up();
  const found = (): string | undefined => re.exec(g.console.all)?.[0];
  const hit = found();
  if (hit !== undefined) return hit;
  // bounded: the timer below
  return new Promise((resolve, reject) => {
    const onData = () => {
      const match = found();
      if (match === undefined) return;
      cleanup();
      resolve(match);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        m.fail(`timed out after ${timeout} s waiting for console text ${re}`, `waitForConsoleText(${re})`, {
          output: tail(g.console.all),
          location,
        }),
      );
    }, timeout * 1000);
    const cleanup = () => {
      clearTimeout(timer);
      g.console.off("data", onData);
    };
    g.console.on("data", onData);
  });
}

export async function getTtyText(m: MachineCore, location: string | undefined, tty: number): Promise<string> {
  const r = await m.run(
    `fold -w "$(stty -F /dev/tty${tty} size | cut -d' ' -f2)" /dev/vcs${tty}`,
    `getTtyText(${tty})`,
    location,
    60,
  );
  return r.stdout;
}

export function waitUntilTtyMatches(
  m: MachineCore,
  location: string | undefined,
  tty: number,
  pattern: Pattern,
  timeout = DEFAULT_TIMEOUT,
): Promise<void> {
  const re = toRegExp(pattern);
  return waitFor(
    m,
    {
      call: `waitUntilTtyMatches(${tty}, ${re})`,
      heading: `waiting for ${re} on tty${tty}`,
      what: `${re} on tty${tty}`,
      timeout,
      location,
    },
    async () => {
      const text = await getTtyText(m, location, tty);
      return { done: re.test(text), last: `tty${tty} shows:\n${text.trimEnd()}` };
    },
  );
}
