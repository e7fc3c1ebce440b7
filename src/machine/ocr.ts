import fs from "node:fs";
import { run } from "../util/proc.js";

/**
 * OCR of a machine's screen with Debian's tesseract. The screen arrives as the PPM
 * that QEMU's screendump writes; preparing it here (not with ImageMagick, as the
 * NixOS driver does) keeps the host dependency to tesseract alone.
 */

/** An 8-bit grey image. */
export interface Gray {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Parse a binary PPM (P6) or PGM (P5) with maxval 255 into luminance. */
export function parsePnm(buf: Buffer): Gray {
  let pos = 0;
  const token = (): string => {
    for (;;) {
      while (pos < buf.length && /\s/.test(String.fromCharCode(buf[pos]!))) pos++;
      if (buf[pos] !== 0x23) break; // '#': a comment runs to the end of the line
      while (pos < buf.length && buf[pos] !== 0x0a) pos++;
    }
    const start = pos;
    while (pos < buf.length && !/\s/.test(String.fromCharCode(buf[pos]!))) pos++;
    return buf.toString("latin1", start, pos);
  };
  const magic = token();
  if (magic !== "P6" && magic !== "P5") throw new Error(`not a binary PPM/PGM (magic ${JSON.stringify(magic)})`);
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  if (!(width > 0 && height > 0) || maxval !== 255)
    throw new Error(`unsupported PNM header: ${width}x${height}, maxval ${maxval}`);
  pos++; // the single whitespace byte before the raster
  const channels = magic === "P6" ? 3 : 1;
  if (buf.length - pos < width * height * channels) throw new Error("PNM raster is truncated");
  const data = new Uint8Array(width * height);
  for (let i = 0, p = pos; i < data.length; i++, p += channels) {
    // ITU-R BT.601 luma, in integers
    data[i] = channels === 1 ? buf[p]! : (buf[p]! * 299 + buf[p + 1]! * 587 + buf[p + 2]! * 114 + 500) / 1000;
  }
  return { width, height, data };
}

export function toPgm(img: Gray): Buffer {
  return Buffer.concat([Buffer.from(`P5\n${img.width} ${img.height}\n255\n`, "latin1"), Buffer.from(img.data)]);
}

/** Tesseract reads dark text on a light page best; a console is light text on black. */
export function darkOnLight(img: Gray): Gray {
  let sum = 0;
  for (const v of img.data) sum += v;
  if (sum / img.data.length >= 128) return img;
  return { ...img, data: img.data.map((v) => 255 - v) };
}

/** Stretch the grey levels to the full 0–255 range. */
export function stretch(img: Gray): Gray {
  let lo = 255;
  let hi = 0;
  for (const v of img.data) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi - lo < 1 || (lo === 0 && hi === 255)) return img;
  const k = 255 / (hi - lo);
  return { ...img, data: img.data.map((v) => Math.round((v - lo) * k)) };
}

/** Bilinear upscaling: VGA text glyphs are ~9 px wide, tesseract wants ~20–30 px letters. */
export function upscale(img: Gray, factor: number): Gray {
  const width = Math.round(img.width * factor);
  const height = Math.round(img.height * factor);
  const data = new Uint8Array(width * height);
  const { data: src, width: sw, height: sh } = img;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(sh - 1, Math.max(0, (y + 0.5) / factor - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(sh - 1, y0 + 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(sw - 1, Math.max(0, (x + 0.5) / factor - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(sw - 1, x0 + 1);
      const wx = fx - x0;
      const top = src[y0 * sw + x0]! * (1 - wx) + src[y0 * sw + x1]! * wx;
      const bottom = src[y1 * sw + x0]! * (1 - wx) + src[y1 * sw + x1]! * wx;
      data[y * width + x] = Math.round(top * (1 - wy) + bottom * wy);
    }
  }
  return { width, height, data };
}

/** How many pixels have each grey level. */
export function histogram(img: Gray): number[] {
  const hist = new Array<number>(256).fill(0);
  for (const v of img.data) hist[v]!++;
  return hist;
}

/** Black and white at Otsu's threshold (the one that best separates two grey populations). */
export function binarize(img: Gray): Gray {
  const hist = histogram(img);
  const total = img.data.length;
  let sumAll = 0;
  for (let i = 0; i < 256; i++) sumAll += i * hist[i]!;
  let sumB = 0;
  let weightB = 0;
  let best = 0;
  let threshold = 127;
  for (let t = 0; t < 256; t++) {
    weightB += hist[t]!;
    if (weightB === 0) continue;
    const weightF = total - weightB;
    if (weightF === 0) break;
    sumB += t * hist[t]!;
    const meanB = sumB / weightB;
    const meanF = (sumAll - sumB) / weightF;
    const between = weightB * weightF * (meanB - meanF) ** 2;
    if (between > best) {
      best = between;
      threshold = t;
    }
  }
  return { ...img, data: img.data.map((v) => (v > threshold ? 255 : 0)) };
}

/**
 * Screens at least this wide are a desktop or a framebuffer console: their text is drawn
 * at its own size (≥ 8×16 px glyphs) and tesseract reads it as drawn, in ~0.3 s for
 * 1024×768. Narrower ones are VGA text mode (720×400, 9 px glyphs), read best ×3.
 */
const DESKTOP_WIDTH = 1000;

/**
 * The images OCR reads, best first. A text-mode screen: prepared for tesseract (dark on
 * light, contrast stretched, upscaled ×3), the same in pure black and white, and the screen
 * as QEMU drew it. A desktop: prepared at its own size (upscaling it would cost seconds
 * a read), its black and white, and ×2 for small print. Different glyphs survive different
 * preparations, so `getScreenTextVariants()` offers all three, as the NixOS driver does.
 */
export function ocrImages(screen: Gray): Gray[] {
  return [...preparedImages(screen)];
}

/** The same, made one at a time: a read that stops at the first image never prepares the others. */
function* preparedImages(screen: Gray): Generator<Gray> {
  const base = stretch(darkOnLight(screen));
  const desktop = screen.width >= DESKTOP_WIDTH;
  const prepared = desktop ? base : upscale(base, 3);
  yield prepared;
  yield binarize(prepared);
  yield desktop ? upscale(base, 2) : screen;
}

const INSTALL_TESSERACT = "apt install tesseract-ocr tesseract-ocr-eng (scripts/setup.sh installs them)";

/**
 * Tesseract on one image, handed over on stdin, with a page segmentation mode (`psm`);
 * `config` picks the output (`tsv`: words with their boxes). One thread: the host's cores belong to the VMs.
 */
async function runTesseract(img: Gray, psm = "3", config: string[] = []): Promise<string> {
  const { stdout } = await run("tesseract", ["stdin", "stdout", "-l", "eng", "--psm", psm, ...config], {
    input: toPgm(img),
    env: { ...process.env, OMP_THREAD_LIMIT: "1" },
    hint: `OCR needs tesseract with English data: ${INSTALL_TESSERACT}`,
  });
  return stdout;
}

/** The text tesseract reads in one image. */
export async function tesseract(img: Gray): Promise<string> {
  return (await runTesseract(img)).replace(/\f/g, "").trimEnd();
}

/** Read the OCR images of a screen dump in turn; stops early once `accept` says yes. */
export async function readScreen(
  ppmFile: string,
  accept: (text: string) => boolean = () => false,
  count = 3,
): Promise<string[]> {
  const texts: string[] = [];
  for (const img of preparedImages(parsePnm(fs.readFileSync(ppmFile)))) {
    texts.push(await tesseract(img));
    if (texts.length >= count || accept(texts[texts.length - 1]!)) break;
  }
  return texts;
}

/** Whether tesseract and its English data are installed (checked before any VM boots). */
export async function ocrAvailable(): Promise<string | undefined> {
  try {
    const { stdout } = await run("tesseract", ["--list-langs"]);
    return /^eng$/m.test(stdout) ? undefined : "tesseract has no English data: apt install tesseract-ocr-eng";
  } catch {
    return `tesseract is not installed: ${INSTALL_TESSERACT}`;
  }
}

/** A word OCR read, with its box in screen pixels. */
export interface ScreenWord {
  text: string;
  x: number;
  y: number;
  width: number;
  height: number;
  /** tesseract's confidence, 0–100 */
  confidence: number;
  /** words with the same line number are on one line of text */
  line: string;
}

/**
 * The readings words are taken from, best first. A desktop: tesseract's page layout at the
 * screen's own size; then its sparse-text mode (`--psm 11`, for text scattered over a
 * screen: page layout drops a small dialog among larger windows); then that ×2, for small
 * print (a button's label in a 6×13 font). Text mode: ×3, then as drawn.
 */
function* wordReadings(screen: Gray): Generator<{ img: Gray; psm: string }> {
  const base = stretch(darkOnLight(screen));
  if (screen.width >= DESKTOP_WIDTH) {
    yield { img: base, psm: "3" };
    yield { img: base, psm: "11" };
    yield { img: upscale(base, 2), psm: "11" };
    // light windows on a dark desktop: inverted as a whole, a window becomes a dark block
    // tesseract cannot read into; the desktop's own colour turned white instead keeps them as drawn
    const lifted = whitenBackground(screen);
    yield { img: lifted, psm: "11" };
    yield { img: upscale(lifted, 2), psm: "11" };
  } else {
    yield { img: upscale(base, 3), psm: "3" };
    yield { img: screen, psm: "3" };
  }
}

/**
 * The screen with its desktop made white: the most common grey level, where it reaches the
 * screen's edge (a flood fill from the border), so text of the same colour inside windows stays.
 */
function whitenBackground(screen: Gray): Gray {
  const { width: w, height: h } = screen;
  const hist = histogram(screen);
  const mode = hist.indexOf(Math.max(...hist));
  const data = Uint8Array.from(screen.data);
  const stack: number[] = [];
  const visit = (i: number) => {
    if (data[i] !== mode) return;
    data[i] = 255;
    stack.push(i);
  };
  if (mode === 255) return screen;
  for (let x = 0; x < w; x++) {
    visit(x);
    visit((h - 1) * w + x);
  }
  for (let y = 0; y < h; y++) {
    visit(y * w);
    visit(y * w + w - 1);
  }
  for (let i = stack.pop(); i !== undefined; i = stack.pop()) {
    const x = i % w;
    if (x > 0) visit(i - 1);
    if (x < w - 1) visit(i + 1);
    if (i >= w) visit(i - w);
    if (i < (h - 1) * w) visit(i + w);
  }
  return { ...screen, data };
}

/** A button's or a tab's outline read as part of its label: "(Accept", "[OK]", "Decline)". */
const FRAME = /^[()[\]{}<>|«»]+|[()[\]{}<>|«»]+$/g;

/** Tesseract's words in one image, with their boxes mapped back to the screen's pixels. */
async function wordsIn(img: Gray, psm: string, screen: Gray): Promise<ScreenWord[]> {
  const scale = img.width / screen.width;
  const stdout = await runTesseract(img, psm, ["tsv"]);
  const words: ScreenWord[] = [];
  for (const row of stdout.split("\n").slice(1)) {
    const f = row.split("\t");
    const raw = f[11]?.trim() ?? "";
    if (f.length < 12 || f[0] !== "5" || !raw) continue;
    const text = /[\p{L}\p{N}]/u.test(raw) ? raw.replace(FRAME, "") : raw;
    const [left, top, width, height, conf] = f.slice(6, 11).map(Number) as [number, number, number, number, number];
    words.push({
      text,
      x: Math.round(left / scale),
      y: Math.round(top / scale),
      width: Math.round(width / scale),
      height: Math.round(height / scale),
      confidence: conf,
      line: f.slice(1, 5).join("."),
    });
  }
  return words;
}

/**
 * The words OCR reads on a screen dump, with their boxes in screen pixels: those of the
 * first image `accept` takes (each one is read only if the one before was not taken), or of
 * the first image if none is.
 */
export async function readScreenWords(
  ppmFile: string,
  accept: (words: ScreenWord[]) => boolean = () => true,
): Promise<ScreenWord[]> {
  const screen = parsePnm(fs.readFileSync(ppmFile));
  let first: ScreenWord[] | undefined;
  for (const { img, psm } of wordReadings(screen)) {
    const words = await wordsIn(img, psm, screen);
    first ??= words;
    if (accept(words)) return words;
  }
  return first ?? [];
}

/** The first run of words (≤ 16) on one line whose text, joined by spaces, matches `re`: the shortest run first. */
export function findWords(words: ScreenWord[], re: RegExp): ScreenWord | undefined {
  // single words first, then runs of two, …: "Decline" must not be found as "Accept Decline"
  for (let len = 1; len <= Math.min(words.length, 16); len++) {
    for (let i = 0; i + len <= words.length; i++) {
      const j = i + len - 1;
      if (words[j]!.line !== words[i]!.line) continue;
      const run = words.slice(i, j + 1);
      if (!re.test(run.map((w) => w.text).join(" "))) continue;
      const x = Math.min(...run.map((w) => w.x));
      const y = Math.min(...run.map((w) => w.y));
      const right = Math.max(...run.map((w) => w.x + w.width));
      const bottom = Math.max(...run.map((w) => w.y + w.height));
      return {
        text: run.map((w) => w.text).join(" "),
        x,
        y,
        width: right - x,
        height: bottom - y,
        confidence: Math.min(...run.map((w) => w.confidence)),
        line: words[i]!.line,
      };
    }
  }
  return undefined;
}
