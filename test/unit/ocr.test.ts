import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Logger } from "../../src/session/logger.js";
import { Machine } from "../../src/machine/machine.js";
import {
  binarize,
  darkOnLight,
  ocrImages,
  findWords,
  parsePnm,
  stretch,
  toPgm,
  upscale,
  type Gray,
} from "../../src/machine/ocr.js";
import { screenMemo } from "../../src/machine/display.js";

const gray = (width: number, height: number, values: number[]): Gray => ({
  width,
  height,
  data: Uint8Array.from(values),
});

describe("OCR image preparation", () => {
  it("parses QEMU's PPM (comments allowed) into luminance, and PGM back", () => {
    const ppm = Buffer.concat([Buffer.from("P6\n# made by QEMU\n2 1\n255\n"), Buffer.from([255, 255, 255, 255, 0, 0])]);
    const img = parsePnm(ppm);
    expect([img.width, img.height]).toEqual([2, 1]);
    expect([...img.data]).toEqual([255, 76]); // white; red's luma is 0.299
    expect(parsePnm(toPgm(img))).toEqual(img);
    expect(() => parsePnm(Buffer.from("P3\n1 1\n255\n0 0 0"))).toThrow(/not a binary PPM/);
    expect(() => parsePnm(Buffer.from("P6\n4 4\n255\n\0\0\0"))).toThrow(/truncated/);
  });

  it("turns light-on-dark (a console) into dark-on-light and leaves a light page alone", () => {
    const console_ = gray(4, 1, [0, 0, 0, 200]);
    expect([...darkOnLight(console_).data]).toEqual([255, 255, 255, 55]);
    const page = gray(4, 1, [255, 255, 255, 10]);
    expect(darkOnLight(page)).toBe(page);
  });

  it("stretches contrast to the full range", () => {
    expect([...stretch(gray(3, 1, [100, 150, 200])).data]).toEqual([0, 127, 255]);
    const flat = gray(2, 1, [7, 7]);
    expect(stretch(flat)).toBe(flat);
  });

  it("upscales bilinearly: sizes multiply, flat areas stay flat, edges blend", () => {
    const big = upscale(gray(2, 1, [0, 255]), 3);
    expect([big.width, big.height]).toEqual([6, 3]);
    const row = [...big.data.subarray(0, 6)];
    expect(row[0]).toBe(0);
    expect(row[5]).toBe(255);
    expect(row).toEqual([...row].sort((x, y) => x - y)); // a ramp between the two pixels
    expect(row.some((v) => v > 0 && v < 255)).toBe(true);
  });

  it("binarizes at the threshold between two grey populations", () => {
    expect([...binarize(gray(6, 1, [10, 20, 30, 200, 210, 220])).data]).toEqual([0, 0, 0, 255, 255, 255]);
  });

  it("offers three images: prepared ×3, its black and white, and the screen as drawn", () => {
    const screen = gray(2, 2, [0, 0, 0, 180]);
    const [prepared, bw, raw] = ocrImages(screen);
    expect([prepared!.width, prepared!.height]).toEqual([6, 6]);
    expect(prepared!.data[0]).toBe(255); // the black background became the page
    expect(new Set(bw!.data)).toEqual(new Set([0, 255]));
    expect(raw).toBe(screen);
  });

  it("reads a desktop as drawn (upscaling 1024×768 would cost seconds a read), then ×2 for small print", () => {
    const screen = gray(1024, 2, new Array<number>(2048).fill(200).fill(0, 0, 10));
    const [prepared, bw, big] = ocrImages(screen);
    expect([prepared!.width, prepared!.height]).toEqual([1024, 2]);
    expect(new Set(bw!.data)).toEqual(new Set([0, 255]));
    expect([big!.width, big!.height]).toEqual([2048, 4]);
  });
});

describe("a wait's screen memory", () => {
  it("reads a screen once while it stays the same, and again once it changes", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-memo-"));
    const dump = path.join(dir, "screen.ppm");
    const memo = screenMemo<string>();
    let reads = 0;
    const read = (f: string) => Promise.resolve(`reading ${++reads} of ${fs.readFileSync(f, "utf8")}`);
    fs.writeFileSync(dump, "loading");
    expect(await memo(dump, read)).toBe("reading 1 of loading");
    expect(await memo(dump, read)).toBe("reading 1 of loading");
    fs.writeFileSync(dump, "Hello");
    expect(await memo(dump, read)).toBe("reading 2 of Hello");
    // another wait starts with no memory
    expect(await screenMemo<string>()(dump, read)).toBe("reading 3 of Hello");
    fs.rmSync(dir, { recursive: true });
  });
});

describe("OCR in the Machine API", () => {
  it("refuses without enableOCR, naming the machine, the call and the fix, before touching a VM", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-ocr-"));
    const logger = new Logger(path.join(dir, "log.txt"), () => undefined);
    const m = new Machine("box", {
      logger,
      resultDir: dir,
      spec: () => {
        throw new Error("must not build a VM");
      },
    });
    await expect(m.getScreenText()).rejects.toThrow(
      /box\.getScreenText\(\): OCR is off for this test[\s\S]*set `enableOCR: true`/,
    );
    await expect(m.waitForText("x", 1)).rejects.toThrow(/box\.waitForText\(\/x\/m\): OCR is off/);
    await logger.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe("finding text among OCR's words", () => {
  const w = (text: string, x: number, line: string) => ({
    text,
    x,
    y: 10,
    width: 30,
    height: 12,
    confidence: 90,
    line,
  });
  const words = [
    w("Do", 0, "1.1.1.1"),
    w("you", 40, "1.1.1.1"),
    w("Accept", 0, "1.1.2.1"),
    w("Decline", 80, "1.1.2.1"),
  ];

  it("finds a word, or the shortest run of words on one line, with the box around it", () => {
    expect(findWords(words, /Decline/)).toMatchObject({ text: "Decline", x: 80, width: 30 });
    expect(findWords(words, /Do you/)).toMatchObject({ text: "Do you", x: 0, width: 70 });
    // never across lines
    expect(findWords(words, /you Accept/)).toBeUndefined();
  });
});
