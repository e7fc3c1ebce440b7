import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { DEFAULT_TIMEOUT, toRegExp, type MachineCore, type Pattern } from "./core.js";
import { keyFor, parseKeyCombo, type KeyValue } from "./keys.js";
import { findWords, readScreen, readScreenWords, type ScreenWord } from "./ocr.js";
import { click, parkPointer } from "./pointer.js";
import { waitFor } from "./waiting.js";
import { VmrigError, errorMessage } from "../util/errors.js";
import type { QemuVm } from "../vm/qemu.js";
import { QmpError } from "../vm/qmp.js";
import { sleep } from "../util/proc.js";

export async function screenshot(m: MachineCore, location: string | undefined, name: string): Promise<string> {
  const vm = await m.qemu("screenshot()", location);
  const file = path.resolve(m.ctx.resultDir, name.endsWith(".png") ? name : `${name}.png`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await vm.qmp.execute("screendump", { filename: file, format: "png" });
  m.log.log(`screenshot ${path.relative(process.cwd(), file)}`, m.name);
  return file;
}

/** `sendKey`/`sendChars` options, NixOS's `send_key(key, delay=0.01, log=True)`. */
export interface KeyOptions {
  /** seconds to wait after each key (NixOS: 0.01); 0 for none */
  delay?: number;
  /** log "sending key …" (sendKey only; NixOS's `log`) */
  log?: boolean;
}

/** NixOS's pause after each key. */
const KEY_DELAY = 0.01;

/** How long each key is held down. */
const HOLD_MS = 20;

/**
 * One key combination: each key pressed in order, held, released in reverse, each as its own
 * QMP `input-send-event`, and only then the next. QEMU's own `sendkey` queues a combination's
 * releases behind its hold time and 10 ms after every event, and drops events once 50 wait in
 * that queue (ui/input.c): keys sent faster than the queue drains lose releases, and shift
 * stays down. Measured on an X11 desktop: 1000 characters through `sendkey` arrived with
 * letters missing and shift stuck, from the 10th line on; QEMU's trace showed the releases
 * missing, not the guest dropping them.
 */
async function pressKey(
  m: MachineCore,
  vm: QemuVm,
  where: { call: string; location: string | undefined },
  combo: string,
  delay: number,
): Promise<void> {
  let keys: KeyValue[];
  try {
    keys = parseKeyCombo(combo);
  } catch (e) {
    throw m.fail(errorMessage(e), where.call, {
      location: where.location,
      hint: 'write keys as QEMU\'s sendkey does: "ctrl-alt-f1", "ret", "shift-a"',
    });
  }
  const send = (key: KeyValue, down: boolean) =>
    vm.qmp.execute("input-send-event", { events: [{ type: "key", data: { down, key } }] });
  try {
    for (const k of keys) await send(k, true);
    await sleep(HOLD_MS); // pacing: how long the key is down, not a retry
    for (const k of [...keys].reverse()) await send(k, false);
  } catch (e) {
    if (!(e instanceof QmpError)) throw e;
    throw m.fail(`QEMU refused the key combination ${JSON.stringify(combo)}: ${e.desc}`, where.call, {
      location: where.location,
      hint: "key names are QEMU's QKeyCode names (`ret`, `spc`, `esc`, `ctrl`, `alt`, `shift`, `f1`, `bracket_left`, …), joined by '-'",
    });
  }
  if (delay > 0) await sleep(delay * 1000); // pacing, not a retry
}

export async function sendKey(
  m: MachineCore,
  location: string | undefined,
  key: string,
  opts: KeyOptions = {},
): Promise<void> {
  const call = `sendKey(${JSON.stringify(key)})`;
  const vm = await m.qemu(call, location);
  if (opts.log ?? true) m.log.log(`sending key ${JSON.stringify(key)}`, m.name);
  await pressKey(m, vm, { call, location }, key, opts.delay ?? KEY_DELAY);
}

export async function sendChars(
  m: MachineCore,
  location: string | undefined,
  text: string,
  opts: Pick<KeyOptions, "delay"> = {},
): Promise<void> {
  const vm = await m.qemu("sendChars()", location);
  m.log.log(`sending keys ${JSON.stringify(text)}`, m.name);
  for (const ch of text) await pressKey(m, vm, { call: "sendChars()", location }, keyFor(ch), opts.delay ?? KEY_DELAY);
}

let dumps = 0;

/**
 * OCR's one way to the screen: the refusal without `enableOCR`, QEMU's screendump as a PPM
 * in the run's state directory (removed after), and tesseract's failures as this machine's
 * report.
 */
async function withScreenDump<T>(
  m: MachineCore,
  call: string,
  location: string | undefined,
  read: (ppmFile: string) => Promise<T>,
): Promise<T> {
  if (!m.ctx.ocr) {
    throw m.fail("OCR is off for this test", call, {
      location,
      hint: "set `enableOCR: true` in defineTest (NixOS: enableOCR = true); it needs tesseract on the host",
    });
  }
  const vm = await m.qemu(call, location);
  const dump = path.join(vm.spec.stateDir, `${vm.spec.name.slice(0, 20)}.ocr${dumps++}.ppm`);
  try {
    await vm.qmp.execute("screendump", { filename: dump });
    return await read(dump);
  } catch (e) {
    if (e instanceof VmrigError && e.machine === undefined) {
      // tesseract failed on the host: keep its command, output and hint, say where
      throw m.fail(`OCR failed: ${e.summary}`, call, {
        location,
        command: e.command,
        status: e.status,
        output: e.output,
        hint: e.hint,
        cause: e,
      });
    }
    throw e instanceof VmrigError
      ? e
      : m.fail(`could not read the screen: ${errorMessage(e)}`, call, { location, cause: e });
  } finally {
    fs.rmSync(dump, { force: true });
  }
}

/**
 * A wait's memory of the last screen it read. A screen identical to the last one reads the
 * same, so a wait skips tesseract until the screen changes: each reading costs up to a second
 * of a host core, and under TCG the guest's vCPUs need every core (a browser drawing its
 * first page is what most waits for text wait on).
 */
export type ScreenMemo<T> = (dump: string, read: (dump: string) => Promise<T>) => Promise<T>;

export function screenMemo<T>(): ScreenMemo<T> {
  let last: { digest: string; value: T } | undefined;
  return async (dump, read) => {
    const digest = createHash("sha256").update(fs.readFileSync(dump)).digest("hex");
    if (last?.digest !== digest) last = { digest, value: await read(dump) };
    return last.value;
  };
}

/** A screen read once: no memory. */
const readOnce = <T>(dump: string, read: (dump: string) => Promise<T>) => read(dump);

/** OCR of the screen: `count` variants, stopping early at one `accept` likes. */
export function readScreenText(
  m: MachineCore,
  call: string,
  location: string | undefined,
  count: number,
  accept?: (t: string) => boolean,
  memo: ScreenMemo<string[]> = readOnce,
): Promise<string[]> {
  return withScreenDump(m, call, location, (dump) =>
    memo(dump, async () => {
      const texts = await readScreen(dump, accept, count);
      m.log.detail(`OCR read ${texts[0]!.length} characters`, m.name);
      return texts;
    }),
  );
}

export function waitForText(
  m: MachineCore,
  location: string | undefined,
  pattern: Pattern,
  timeout = DEFAULT_TIMEOUT,
): Promise<void> {
  const re = toRegExp(pattern);
  const call = `waitForText(${re})`;
  const memo = screenMemo<string[]>();
  return waitFor(
    m,
    { call, heading: `waiting for ${re} on the screen (OCR)`, what: `${re} on the screen`, timeout, location },
    async () => {
      const texts = await readScreenText(m, call, location, 3, (t) => re.test(t), memo);
      return { done: texts.some((t) => re.test(t)), last: `OCR of the screen read:\n${texts[0]!.trimEnd()}` };
    },
  );
}

/** The words OCR reads on the screen, with their boxes in screen pixels (needs `enableOCR`). */
export function getScreenWords(m: MachineCore, location: string | undefined): Promise<ScreenWord[]> {
  return withScreenDump(m, "getScreenWords()", location, (dump) => readScreenWords(dump));
}

/** Click the centre of the first word, or run of words on one line, that OCR reads as matching `pattern`. */
export function clickText(
  m: MachineCore,
  location: string | undefined,
  pattern: Pattern,
  opts: { timeout?: number } = {},
): Promise<void> {
  const re = toRegExp(pattern);
  const call = `clickText(${re})`;
  const memo = screenMemo<ScreenWord[]>();
  return waitFor(
    m,
    {
      call,
      heading: `waiting for ${re} on the screen to click it (OCR)`,
      what: `${re} on the screen`,
      timeout: opts.timeout ?? DEFAULT_TIMEOUT,
      location,
    },
    async () => {
      const read = () =>
        withScreenDump(m, call, location, (dump) =>
          memo(dump, () => readScreenWords(dump, (ws) => findWords(ws, re) !== undefined)),
        );
      let words = await read();
      // the pointer may be what hides it (it is over the last thing clicked): move it away, read again
      if (!findWords(words, re) && (await parkPointer(m, location, call))) {
        await sleep(300); // X draws the pointer away within a frame or two, under TCG a few
        words = await read();
      }
      const w = findWords(words, re);
      if (!w) {
        await screenshot(m, location, "clickText-last-screen");
        return { done: false, last: `OCR read these words:\n${words.map((x) => x.text).join(" ")}` };
      }
      m.log.log(`"${w.text}" is at (${w.x}, ${w.y}) ${w.width}×${w.height}`, m.name);
      await click(m, location, w.x + Math.floor(w.width / 2), w.y + Math.floor(w.height / 2));
      return { done: true };
    },
  );
}
