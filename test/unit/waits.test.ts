import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

// Every wait has a deadline (#23). Two rules keep it so as the code changes, checked on the
// source: retry loops go through util/poll.ts (one loop, with a deadline and a report), and
// every other wait on an event says, where it is made, what bounds it.

const src = path.join(import.meta.dirname, "../../src");
const files = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
const sources = files(src).map((f) => ({ file: path.relative(src, f), lines: fs.readFileSync(f, "utf8").split("\n") }));

describe("waits in src/", () => {
  it("retry by util/poll.ts alone: no sleep in a loop of its own", () => {
    const found: string[] = [];
    for (const { file, lines } of sources) {
      if (file === "util/poll.ts" || file === "util/proc.ts") continue;
      lines.forEach((l, i) => {
        // a pause with its reason on the line is not a retry loop
        if (/\bawait sleep\(/.test(l) && !/\/\/ /.test(l)) found.push(`${file}:${i + 1}: ${l.trim()}`);
        if (/\bfor \(let \w+ = 0; \w+ < \d+.*\) await /.test(l)) found.push(`${file}:${i + 1}: ${l.trim()}`);
      });
    }
    expect(found).toEqual([]);
  });

  it("say what bounds each promise that waits for an event", () => {
    const unbounded: string[] = [];
    for (const { file, lines } of sources) {
      if (file.startsWith("util/")) continue; // the primitives, each with tests of its own
      lines.forEach((l, i) => {
        // a race arm that only ever rejects (died, aborted) waits for nothing by itself
        if (!/new Promise\b/.test(l) || /new Promise<never>/.test(l)) return;
        const before = lines.slice(Math.max(0, i - 3), i + 1).join("\n");
        if (!/\/\/ bounded: /.test(before)) unbounded.push(`${file}:${i + 1}: ${l.trim()}`);
      });
    }
    expect(unbounded).toEqual([]);
  });
});
