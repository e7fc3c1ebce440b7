// Graphical machines (SPEC §8): numbers and ratios in one run, no assertions.
//   node bench/graphical.bench.mjs [--restores N] [--reads N]
// 1. an IceWM desktop (the x11-terminal example's node): first boot → waitForX (snapshots
//    off) vs restore → waitForX
// 2. OCR of a real 1024×768 desktop with an xterm full of text: seconds a read, per variant
// 3. clickText(/Decline/) on an xmessage dialog of that desktop: screen read → click, seconds
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { readScreen } from "../dist/machine/ocr.js";
import { cleanup, desktopNode, median, rowPrinter, s, scratch, topology } from "./lib.mjs";

const args = process.argv.slice(2);
const opt = (name, fallback) => Number(args[args.indexOf(name) + 1] || fallback) || fallback;
const restores = opt("--restores", 3);
const reads = opt("--reads", 5);
const row = rowPrinter(58, 14);

const desktop = { machine: desktopNode({ environment: { systemPackages: ["xterm"] } }) };

/** start() → waitForX() of a fresh topology; `then` runs on the machine before it closes. */
async function toX(snapshots, then) {
  const t = await topology({ name: "bench-x11", nodes: desktop }, snapshots, true);
  try {
    const m = t.machines[0];
    const t0 = performance.now();
    await m.start();
    await m.waitForX();
    const ms = performance.now() - t0;
    const origin = m.origin;
    if (then) await then(m);
    return { ms, origin };
  } finally {
    await t.close();
  }
}

try {
  console.log(`host: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
  await toX(true); // makes the boot snapshot if missing
  const cold = await toX(false);
  const warm = [];
  for (let i = 0; i < restores; i++) warm.push(await toX(true));
  const w = median(warm.map((x) => x.ms));
  row("desktop, first boot → waitForX (no snapshot)", s(cold.ms));
  row(`desktop, restore → waitForX (median of ${restores})`, s(w), "≤ 1 s");
  console.log(`  all restores: ${warm.map((x) => s(x.ms)).join(", ")}; origin: ${warm[0].origin}`);
  row("  ratio first boot / restore", `${(cold.ms / w).toFixed(1)}×`);

  const dir = scratch();
  const dump = path.join(dir, "desktop.ppm");
  await toX(true, async (m) => {
    await m.succeed(
      "xterm -title OcrBench -geometry 100x30 -fa DejaVuSansMono -fs 12 -e sh -c 'ls -l /etc | head -40; sleep 600' >/dev/null 2>&1 &",
    );
    await m.waitForWindow(/OcrBench/);
    // until the listing is drawn (xterm maps its window before its child has written)
    await m.waitUntilSucceeds("xdotool search --name OcrBench >/dev/null && pgrep -f 'sleep 600'", 60);
    await m.sleep(5);
    await m.qmp("screendump", { filename: dump });
    await m.qmp("screendump", { filename: `${dump}.png`, format: "png" });
  });
  for (const [i, label] of ["prepared (as drawn)", "black and white", "×2"].entries()) {
    const times = [];
    let chars = 0;
    for (let r = 0; r < reads; r++) {
      const t0 = performance.now();
      const texts = await readScreen(dump, () => false, i + 1);
      times.push(performance.now() - t0);
      chars = texts[i].length;
    }
    row(`OCR 1024×768 desktop, variants 1..${i + 1} (${label})`, s(median(times)), i === 0 ? "≤ 0.5 s" : "");
    console.log(`  ${chars} characters read by variant ${i + 1}`);
  }
  console.log(`  (the screen: ${fs.statSync(dump).size} bytes of PPM)`);

  const clicks = [];
  const misses = [];
  await toX(true, async (m) => {
    for (let i = 0; i < reads; i++) {
      await m.succeed(
        "xmessage -name ChoiceProbe -buttons Accept,Decline -print 'Do you accept?' > /tmp/choice 2>&1 &",
      );
      await m.waitForWindow(/ChoiceProbe|xmessage/, 60);
      const t0 = performance.now();
      try {
        await m.clickText(/Decline/, { timeout: 20 });
        clicks.push(performance.now() - t0);
        await m.waitUntilSucceeds("grep -qx Decline /tmp/choice", 30);
      } catch (e) {
        // a miss is a figure too: what OCR read instead
        misses.push(/OCR read these words:\n(.*)/.exec(String(e.output ?? e))?.[1] ?? String(e));
        await m.execute("pkill xmessage");
      }
    }
  });
  row(
    `clickText(/Decline/) on a 1024×768 desktop (median of ${clicks.length})`,
    clicks.length ? s(median(clicks)) : "-",
  );
  console.log(
    `  all: ${clicks.map(s).join(", ")}; misses: ${misses.length}${misses.length ? ` (OCR read: ${misses.join(" | ")})` : ""}`,
  );
  fs.copyFileSync(`${dump}.png`, path.join(os.tmpdir(), "vmrig-bench-ocr-desktop.png"));
} finally {
  cleanup();
}
