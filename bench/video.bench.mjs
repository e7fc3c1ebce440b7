// The cost of `vmrig run --video` (SPEC §8): the same graphical example run with and
// without recording, alternately, through the CLI; numbers and the ratio, no assertions.
//   node bench/video.bench.mjs [--runs N] [file]
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cleanup, median, root, rowPrinter, s, scratch } from "./lib.mjs";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf("--runs") + 1] || 3) || 3;
const file = args.find((a) => a.endsWith(".vmrig.ts")) ?? path.join(root, "examples/x11-terminal.vmrig.ts");
const row = rowPrinter(52, 12);

/** One `vmrig run`: wall time of the whole run, and the test's own time (result.json). */
function once(video) {
  const out = scratch();
  const t0 = performance.now();
  const r = spawnSync(
    "node",
    [path.join(root, "dist/cli/main.js"), "run", file, "--rerun", "--output-dir", out, ...(video ? ["--video"] : [])],
    { encoding: "utf8" },
  );
  const wall = performance.now() - t0;
  if (r.status !== 0) throw new Error(`vmrig run failed:\n${r.stdout}${r.stderr}`);
  const [name] = fs.readdirSync(out).filter((d) => fs.existsSync(path.join(out, d, "result.json")));
  const result = JSON.parse(fs.readFileSync(path.join(out, name, "result.json"), "utf8"));
  const script = result.calls?.find((c) => c.label.startsWith("running "))?.durationMs ?? NaN;
  const recording = result.videos?.[0];
  return { wall, test: result.durationMs, script, video: recording, dir: path.join(out, name) };
}

try {
  console.log(`host: ${os.cpus().length} cores; ${path.relative(root, file)}, ${runs} runs each, alternating`);
  once(false); // boot snapshot and images in place
  const plain = [];
  const recorded = [];
  for (let i = 0; i < runs; i++) {
    plain.push(once(false));
    recorded.push(once(true));
  }
  const m = (xs, k) => median(xs.map((x) => x[k]));
  row("vmrig run, whole (median)", s(m(plain, "wall")));
  row("vmrig run --video, whole (median)", s(m(recorded, "wall")));
  row("  ratio", `${(m(recorded, "wall") / m(plain, "wall")).toFixed(3)}×`, "≤ 1.10×");
  row("test script alone (median)", s(m(plain, "script")));
  row("test script alone, recording (median)", s(m(recorded, "script")));
  row("  ratio", `${(m(recorded, "script") / m(plain, "script")).toFixed(3)}×`, "≤ 1.10×");
  const last = recorded.at(-1);
  const v = last.video;
  const kib = (fs.statSync(path.join(last.dir, v.file)).size / 1024).toFixed(0);
  console.log(`  last video: ${v.frames} distinct screens over ${s(v.durationMs)}, ${kib} KiB`);
} finally {
  cleanup();
}
