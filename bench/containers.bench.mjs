// Containers (SPEC §9) against VMs: numbers and ratios in one run, no assertions.
//   node bench/containers.bench.mjs [--starts N]
// 1. one machine: container start → systemd answering with its boot queued, vs a VM's cold boot and restore
// 2. the client-server test, the whole CLI run (images built, --rerun): as VMs (snapshots on and
//    off) and as containers (examples/client-server-containers.vmrig.ts)
// 3. a CPU-bound command in each (TCG emulates a VM's CPU; a container runs natively)
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { cleanup, median, root, rowPrinter, s, scratch, topology } from "./lib.mjs";

const args = process.argv.slice(2);
const starts = Number(args[args.indexOf("--starts") + 1] || 5) || 5;
const row = rowPrinter(62, 12);

/** Start the one machine; time it, and time a command in it. */
async function once(def, snapshots, cmd = "true") {
  const t = await topology(def, snapshots);
  try {
    const m = t.machines[0];
    const t0 = performance.now();
    await m.start();
    const ready = performance.now() - t0;
    const c0 = performance.now();
    await m.succeed(cmd);
    return { ready, cmd: performance.now() - c0 };
  } finally {
    await t.close();
  }
}

function cli(file, extra = []) {
  const out = scratch("vmrig-bench-out-");
  const t0 = performance.now();
  const r = spawnSync(
    "node",
    [path.join(root, "dist/cli/main.js"), "run", file, "--rerun", "--output-dir", out, ...extra],
    {
      cwd: root,
      encoding: "utf8",
    },
  );
  if (r.status !== 0) console.log(r.stdout.slice(-2000), r.stderr.slice(-2000));
  return performance.now() - t0;
}

try {
  console.log(`host: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
  const ct = { name: "bench-ct", containers: { m: {} } };
  const vm = { name: "bench-vm", nodes: { m: {} } };
  await once(ct, true); // builds the tree if missing
  await once(vm, true); // builds the image and makes the snapshot if missing
  const cts = [];
  for (let i = 0; i < starts; i++) cts.push(await once(ct, true));
  const cold = await once(vm, false);
  const restored = [];
  for (let i = 0; i < starts; i++) restored.push(await once(vm, true));
  const ctReady = median(cts.map((c) => c.ready));
  row(`container start → systemd answering, boot queued (median of ${starts})`, s(ctReady), "≤ 2 s");
  console.log(`  all: ${cts.map((c) => s(c.ready)).join(", ")}`);
  row("VM cold boot → the same", s(cold.ready));
  row(`VM restore from its boot snapshot (median of ${starts})`, s(median(restored.map((r) => r.ready))));
  row("  ratio VM cold boot / container start", `${(cold.ready / ctReady).toFixed(1)}×`);

  cli("examples/client-server.vmrig.ts"); // snapshots made if missing
  cli("examples/client-server-containers.vmrig.ts"); // trees built if missing
  const vmWarm = cli("examples/client-server.vmrig.ts");
  const vmCold = cli("examples/client-server.vmrig.ts", ["--no-snapshots"]);
  const ctRun = [];
  for (let i = 0; i < 3; i++) ctRun.push(cli("examples/client-server-containers.vmrig.ts"));
  row("client-server whole CLI run: containers (median of 3)", s(median(ctRun)), "≤ 8 s");
  row("client-server whole CLI run: VMs restored from snapshots", s(vmWarm));
  row("client-server whole CLI run: VMs booted (--no-snapshots)", s(vmCold));
  row("  ratio VMs booted / containers", `${(vmCold / median(ctRun)).toFixed(1)}×`);
  row("  ratio VMs restored / containers", `${(vmWarm / median(ctRun)).toFixed(1)}×`);

  const work = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done";
  const ctCpu = await once(ct, true, work);
  const vmCpu = await once(vm, true, work);
  row("CPU-bound shell loop (200k iterations): container", s(ctCpu.cmd));
  row("CPU-bound shell loop (200k iterations): VM", s(vmCpu.cmd));
  row("  ratio VM / container", `${(vmCpu.cmd / ctCpu.cmd).toFixed(1)}×`);
} finally {
  cleanup();
}
