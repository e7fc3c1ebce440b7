// Boot and command benchmark. Prints numbers and ratios against the targets;
// asserts nothing. `node bench/boot.bench.mjs [--cold] [--boots N]`
//   --cold   also time a cold image build into an empty store (~1 min)
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { evalNodes } from "../dist/config/eval.js";
import { buildNodeImage, prepareBases } from "../dist/image/image.js";
import { storeDir } from "../dist/image/store.js";
import { resolveAccel } from "../dist/vm/accel.js";
import { run } from "../dist/util/proc.js";
import { socketPaths } from "../dist/vm/qemu-args.js";
import { launchQemu } from "../dist/vm/qemu.js";
import { ocrAvailable, readScreen } from "../dist/machine/ocr.js";

const args = process.argv.slice(2);
const boots = Number(args[args.indexOf("--boots") + 1] || 3) || 3;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;
const row = (what, value, target) =>
  console.log(`${what.padEnd(44)} ${value.padStart(10)}${target ? `   target ${target}` : ""}`);

async function build(module, name = "bench") {
  const configs = evalNodes({ [name]: module });
  const t0 = performance.now();
  const base = [...(await prepareBases(configs, () => {})).values()][0];
  const img = await buildNodeImage(name, configs[name], [], base, { progress: () => {}, sourceDir: process.cwd() });
  return { img, ms: performance.now() - t0 };
}

if (args.includes("--cold")) {
  const saved = process.env.VMRIG_CACHE_DIR;
  process.env.VMRIG_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-bench-cold-"));
  const { ms } = await build({});
  row("image build, cold (empty store)", fmt(ms));
  fs.rmSync(process.env.VMRIG_CACHE_DIR, { recursive: true, force: true });
  if (saved === undefined) delete process.env.VMRIG_CACHE_DIR;
  else process.env.VMRIG_CACHE_DIR = saved;
}

const { img } = await build({});
const cached = await build({});
row("image build, cached (nothing changed)", fmt(cached.ms), "≤ 1 s");
const changed = await build({ networking: { hostName: `bench-${Date.now()}` } }, "bench2");
row("image build after a config-only change", fmt(changed.ms), "≤ 3 s");

// +1 package: a package set the store has never seen, in a scratch store that
// shares the real store's base and boot entries (hardlinked), so apt really runs.
{
  await build({ environment: { systemPackages: ["nginx"] } }, "bench3");
  const real = storeDir();
  const saved = process.env.VMRIG_CACHE_DIR;
  process.env.VMRIG_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-bench-pkg-"));
  try {
    fs.mkdirSync(storeDir(), { recursive: true });
    for (const e of fs.readdirSync(real).filter((e) => /-(base-|boot)/.test(e)))
      execFileSync("cp", ["-al", path.join(real, e), path.join(storeDir(), e)]);
    const added = await build({ environment: { systemPackages: ["nginx", "tree"] } }, "bench3");
    row("image build after adding one package", fmt(added.ms), "(apt runs)");
    console.log(
      "  nginx → nginx + tree: the package layer is rebuilt from the base with the whole set, then the config is applied",
    );
    console.log(
      `  built: ${fs
        .readdirSync(storeDir())
        .filter((e) => !/-(base-|boot)/.test(e) && !e.startsWith("."))
        .map((e) => e.replace(/^\w+-/, ""))
        .join(", ")}`,
    );
  } finally {
    fs.rmSync(process.env.VMRIG_CACHE_DIR, { recursive: true, force: true });
    if (saved === undefined) delete process.env.VMRIG_CACHE_DIR;
    else process.env.VMRIG_CACHE_DIR = saved;
  }
}

const accel = await resolveAccel("auto", img.kernel);
console.log(`accelerator: ${accel}, host cores: ${os.cpus().length}`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-bench-"));
const bootTimes = [];
const systemdTimes = [];
let rtts = [];
let rss;
const ocrTimes = [];
let variantsMs;
try {
  for (let i = 0; i < boots; i++) {
    const spec = {
      name: "bench",
      disk: img.root,
      kernel: img.kernel,
      initrd: img.initrd,
      memoryMiB: 1024,
      cores: Math.min(2, os.cpus().length),
      nics: [],
      accel,
      extraArgs: [],
      stateDir: dir,
      consoleLog: path.join(dir, "console.log"),
    };
    const root = path.join(dir, `root${i}.qcow2`);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", img.root, "-F", "raw", root]);
    const t0 = performance.now();
    const vm = await launchQemu(spec, { layout: { sockets: socketPaths(spec), drives: { root } } });
    try {
      bootTimes.push(vm.bootMs);
      await vm.backdoor.run("until systemctl show -p Version --value >/dev/null 2>&1; do sleep 0.05; done");
      systemdTimes.push(performance.now() - t0);
      if (i === boots - 1) {
        for (let j = 0; j < 50; j++) {
          const t = performance.now();
          await vm.backdoor.run("true");
          rtts.push(performance.now() - t);
        }
        await vm.backdoor.run("systemctl is-system-running --wait >/dev/null 2>&1 || true");
        const after = [];
        for (let j = 0; j < 50; j++) {
          const t = performance.now();
          await vm.backdoor.run("true");
          after.push(performance.now() - t);
        }
        rtts = { during: rtts, idle: after };
        rss = Number(fs.readFileSync(`/proc/${vm.pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]) / 1024;
        if (!(await ocrAvailable())) {
          // what getScreenText() does: screendump, prepare, one tesseract run
          await vm.backdoor.run("chvt 8; printf '\\033[2J\\033[Hvmrig bench: OCR of a text console\\n' > /dev/tty8");
          const dump = path.join(dir, "screen.ppm");
          for (let j = 0; j < 3; j++) {
            const t = performance.now();
            await vm.qmp.execute("screendump", { filename: dump });
            const [text] = await readScreen(dump, () => false, 1);
            ocrTimes.push(performance.now() - t);
            if (!/OCR of a text console/.test(text))
              console.log(`  (OCR misread the bench text: ${JSON.stringify(text)})`);
          }
          const t = performance.now();
          await vm.qmp.execute("screendump", { filename: dump });
          await readScreen(dump, () => false, 3);
          variantsMs = performance.now() - t;
        }
      }
    } finally {
      await vm.kill();
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
const boot = median(bootTimes);
row(`QEMU start → backdoor ready (median of ${boots})`, fmt(boot), "≤ 6 s");
console.log(`  all boots: ${bootTimes.map(fmt).join(", ")}; ratio to target ${(boot / 6000).toFixed(2)}`);
row(`QEMU start → systemd takes requests (median)`, fmt(median(systemdTimes)));
console.log(`  all: ${systemdTimes.map(fmt).join(", ")}  (Machine.start() waits for this)`);
row('succeed("true") round trip, median of 50, idle', `${median(rtts.idle).toFixed(1)} ms`, "≤ 10 ms");
row("  … while systemd is still booting", `${median(rtts.during).toFixed(1)} ms`);
row("QEMU RSS after boot (1024 MiB guest)", `${rss.toFixed(0)} MiB`);
if (ocrTimes.length) {
  row("getScreenText() (OCR of the screen), median of 3", fmt(median(ocrTimes)));
  console.log(
    `  all: ${ocrTimes.map(fmt).join(", ")}; the NixOS driver's anchor is ~10 s per screenshot (ratio ${(median(ocrTimes) / 10000).toFixed(2)})`,
  );
  row("getScreenTextVariants() (three images)", fmt(variantsMs));
} else {
  console.log("OCR: tesseract is not installed, not measured");
}
