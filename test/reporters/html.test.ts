import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import type { TestResult } from "../../src/runner/run.js";
import { htmlReport, writeHtml } from "../../src/reporters/html.js";
import { VmrigError } from "../../src/util/errors.js";

// The HTML report, rendered by a real browser (Debian's chromium, headless).

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A w×h PNG of one colour, to stand in for a machine's screenshot. */
function png(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(w * 3, 0x40)]);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function fixture(): { out: string; results: TestResult[] } {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-html-"));
  const failedDir = path.join(out, "web");
  const passedDir = path.join(out, "db");
  fs.mkdirSync(failedDir);
  fs.mkdirSync(passedDir);
  fs.writeFileSync(path.join(failedDir, "failure-server.png"), png(64, 40));
  fs.writeFileSync(
    path.join(failedDir, "log.txt"),
    "  0.1s starting vm\n\x1b[32m  5.0s server: booted\x1b[0m\n  9.9s must succeed: curl <localhost>\n",
  );
  fs.writeFileSync(path.join(failedDir, "server-console.log"), "console\n");
  fs.writeFileSync(path.join(passedDir, "log.txt"), "fine\n");
  const base = { configError: false, bootMs: {} };
  const results: TestResult[] = [
    {
      ...base,
      name: "db",
      file: "/src/db.vmrig.ts",
      outcome: "passed",
      durationMs: 42_000,
      resultDir: passedDir,
      subtests: [
        { name: "schema", outcome: "passed", durationMs: 1000 },
        { name: "queries", outcome: "passed", durationMs: 4000 },
      ],
    },
    {
      ...base,
      name: "web",
      file: "/src/web.vmrig.ts",
      outcome: "failed",
      durationMs: 75_500,
      resultDir: failedDir,
      bootMs: { server: 7800 },
      error: new VmrigError('server.succeed("curl localhost"): command failed with exit status 7', {
        machine: "server",
        status: 7,
      }),
      subtests: [{ name: "front page", outcome: "failed", durationMs: 3000, startMs: 60_000, error: "boom" }],
      timeline: [
        { atMs: 8_000, kind: "power", label: "booted (7.8 s)", machine: "server" },
        { atMs: 30_000, kind: "fault", label: "netem delay 150ms", machine: "server" },
        { atMs: 45_000, kind: "fault", label: "partition server | client" },
        { atMs: 50_000, kind: "fault", label: "heal" },
      ],
    },
    {
      ...base,
      name: "old",
      file: "/src/old.vmrig.ts",
      outcome: "passed",
      cached: true,
      durationMs: 0,
      resultDir: "",
      subtests: [],
    },
  ];
  return { out, results };
}

const chromium = (...args: string[]) =>
  execFileSync("chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });

describe("HTML report", () => {
  it("renders in a real browser: failures first, filter from the URL, artifacts linked and shown", () => {
    const { out, results } = fixture();
    const file = writeHtml(out, results);
    const dom = chromium("--dump-dom", `file://${file}#failed`);
    const sections = [...dom.matchAll(/<section class="test" id="test-(\d)" data-outcome="(\w+)"( hidden="")?/g)].map(
      (m) => [m[1], m[2], Boolean(m[3])],
    );
    // the failed test comes first; with #failed the others are hidden by the page's script
    expect(sections).toEqual([
      ["1", "failed", false],
      ["0", "passed", true],
      ["2", "passed", true],
    ]);
    expect(dom).toMatch(/<button type="button" data-filter="failed" aria-pressed="true">failed 1<\/button>/);
    expect(dom).toContain('<img src="web/failure-server.png"');
    expect(dom).toContain('href="web/server-console.log"');
    expect(dom).toContain("command failed with exit status 7");
    expect(dom).toContain("must succeed: curl &lt;localhost&gt;"); // escaped, and ANSI colours stripped
    expect(dom).not.toContain("\x1b[");
    expect(dom).toMatch(/<title>vmrig: 2 passed, 1 failed<\/title>/);
    // the timeline: a tick per fault and power event where it happened, the subtest as a span, and the list
    expect(dom).toContain('<span class="tick fault" style="left:39.74%" title="30.0 s server: netem delay 150ms">');
    expect(dom).toContain('<span class="span failed" style="left:79.47%;');
    expect(dom).toMatch(/timeline: 3 fault events, 1 power events/);
    expect(dom).toMatch(
      /<td class="num">45\.0 s<\/td><td>fault<\/td><td>all<\/td><td>partition server \| client<\/td>/,
    );
    const all = chromium("--dump-dom", `file://${file}`);
    expect(all).not.toMatch(/data-outcome="\w+" hidden/);

    const shot = path.join(out, "report.png");
    chromium("--window-size=1200,900", `--screenshot=${shot}`, `file://${file}`);
    expect(fs.statSync(shot).size).toBeGreaterThan(10_000);
    fs.rmSync(out, { recursive: true, force: true });
  });

  it("plays each machine's video beside the calls, seeks to a call when it is clicked, and opens a failure at its moment", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-html-video-"));
    const dir = path.join(out, "desktop");
    fs.mkdirSync(dir);
    // 20 s of a changing picture, as vmrig encodes a recording (VP8 WebM, a key frame a second)
    execFileSync("ffmpeg", [
      ...["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=20"],
      ...[
        "-c:v",
        "libvpx",
        "-g",
        "10",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        path.join(dir, "video-desktop.webm"),
      ],
    ]);
    const result: TestResult = {
      name: "desktop",
      file: "/x/desktop.vmrig.ts",
      outcome: "failed",
      configError: false,
      durationMs: 30_000,
      resultDir: dir,
      error: new VmrigError("no window matched /Firefox/", { machine: "desktop", call: "waitForWindow(/Firefox/)" }),
      subtests: [],
      bootMs: {},
      // the video starts 5 s into the test
      videos: [{ machine: "desktop", file: "video-desktop.webm", startMs: 5000, durationMs: 20_000, frames: 200 }],
      calls: [
        { atMs: 6000, durationMs: 3000, label: "waiting for X", machine: "desktop" },
        { atMs: 12_500, durationMs: 1000, label: "must succeed: xterm &", machine: "desktop" },
        {
          atMs: 17_000,
          durationMs: 4000,
          label: "waiting for a window matching /Firefox/",
          machine: "desktop",
          failed: true,
        },
      ],
    };
    const file = writeHtml(out, [result]);
    const { chromium: browserType } = await import("playwright-core");
    const browser = await browserType.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage();
      await page.goto(`file://${file}`);
      const video = page.locator("video");
      await expect.poll(() => video.evaluate((v: HTMLVideoElement) => v.readyState)).toBeGreaterThanOrEqual(1);
      expect(await video.evaluate((v: HTMLVideoElement) => v.duration)).toBeCloseTo(20, 0);
      // a failed test opens at its failed call: 17 s into the test, 12 s into the video
      await expect.poll(() => video.evaluate((v: HTMLVideoElement) => v.currentTime)).toBeCloseTo(12, 1);
      // clicking a call seeks to it and marks it
      await page.getByRole("button", { name: "12.5 s" }).click();
      await expect.poll(() => video.evaluate((v: HTMLVideoElement) => v.currentTime)).toBeCloseTo(7.5, 1);
      expect(await page.locator("ol.calls li.current").innerText()).toContain("must succeed: xterm &");
      // and it plays
      await video.evaluate((v: HTMLVideoElement) => {
        v.muted = true;
        return v.play();
      });
      await expect
        .poll(() => video.evaluate((v: HTMLVideoElement) => v.currentTime), { timeout: 10_000 })
        .toBeGreaterThan(8);
      expect(await video.evaluate((v: HTMLVideoElement) => v.error)).toBeNull();
      // the failed call is marked as such
      expect(await page.locator("ol.calls li.failed").innerText()).toContain("/Firefox/");
    } finally {
      await browser.close();
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("says so when no tests ran", () => {
    expect(htmlReport([], "/tmp")).toContain("No tests ran.");
  });
});
