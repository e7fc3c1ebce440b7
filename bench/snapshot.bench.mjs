// Boot snapshots (SPEC §7): numbers and ratios in one run, no assertions.
//   node bench/snapshot.bench.mjs [--restores N] [--skip-five] [--skip-cli]
// 1. one machine: cold boot (snapshots off) vs restore, QEMU start → backdoor and systemd answering
// 2. examples/client-server.vmrig.ts, the whole CLI run: warm (--rerun) vs --no-snapshots
// 3. five machines with openssh, startAll + every sshd active: cold vs warm
// 4. PSS of ten restored idle 1 GiB VMs, and how many fit in this host's memory
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cleanup, median, root, rowPrinter, s, scratch, topology } from "./lib.mjs";

const args = process.argv.slice(2);
const restores = Number(args[args.indexOf("--restores") + 1] || 5) || 5;
const row = rowPrinter(58, 14);
const topo = (name, nodes, snapshots) => topology({ name, nodes }, snapshots);

async function timedStart(name, nodes, snapshots) {
  const t = await topo(name, nodes, snapshots);
  try {
    const t0 = performance.now();
    await Promise.all(t.machines.map((m) => m.start()));
    const ms = performance.now() - t0;
    const m = t.machines[0];
    const rtt0 = performance.now();
    await m.succeed("true");
    return { ms, origin: m.origin, firstCommandMs: performance.now() - rtt0 };
  } finally {
    await t.close();
  }
}

try {
  console.log(`host: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
  // 1. one machine
  await timedStart("bench-one", { m: {} }, true); // makes the snapshot if missing
  const cold = await timedStart("bench-one", { m: {} }, false);
  const warm = [];
  for (let i = 0; i < restores; i++) warm.push(await timedStart("bench-one", { m: {} }, true));
  row("one machine, cold boot → systemd answering", s(cold.ms));
  row(`one machine, restore → backdoor answering (median of ${restores})`, s(median(warm.map((w) => w.ms))), "≤ 0.5 s");
  console.log(`  all restores: ${warm.map((w) => s(w.ms)).join(", ")}; origin: ${warm[0].origin}`);
  row('  first succeed("true") after the restore', `${median(warm.map((w) => w.firstCommandMs)).toFixed(0)} ms`);
  row("  ratio cold / restore", `${(cold.ms / median(warm.map((w) => w.ms))).toFixed(1)}×`);

  // 2. the client-server example through the CLI
  if (!args.includes("--skip-cli")) {
    const cli = (extra) => {
      const out = scratch("vmrig-bench-out-");
      const t0 = performance.now();
      const r = spawnSync(
        "node",
        [
          path.join(root, "dist/cli/main.js"),
          "run",
          "examples/client-server.vmrig.ts",
          "--rerun",
          "--output-dir",
          out,
          ...extra,
        ],
        { cwd: root, encoding: "utf8" },
      );
      if (r.status !== 0) console.log(r.stderr.slice(-2000));
      return performance.now() - t0;
    };
    cli([]); // makes the snapshots if missing
    const w = cli([]);
    const c = cli(["--no-snapshots"]);
    row("examples/client-server whole CLI run, --rerun (snapshots)", s(w), "≤ 6 s");
    row("examples/client-server whole CLI run, --no-snapshots", s(c));
    row("  ratio", `${(c / w).toFixed(1)}×`, "≥ 4×");
  }

  // 3. five machines with a service each
  if (!args.includes("--skip-five")) {
    const five = Object.fromEntries(
      ["n1", "n2", "n3", "n4", "n5"].map((n) => [n, { services: { openssh: { enable: true } } }]),
    );
    const upAll = async (snapshots) => {
      const t = await topo("bench-five", five, snapshots);
      try {
        const t0 = performance.now();
        await Promise.all(
          t.machines.map(async (m) => {
            await m.start();
            await m.waitForUnit("sshd.service", { timeout: 600 });
          }),
        );
        return performance.now() - t0;
      } finally {
        await t.close();
      }
    };
    await upAll(true); // makes the snapshots if missing
    const c5 = await upAll(false);
    const w5 = await upAll(true);
    row("five machines, every sshd active: cold (two boots at a time)", s(c5), "well under 60 s");
    row("five machines, every sshd active: warm (restored)", s(w5), "a few seconds");
  }

  // 4. memory of restored idle VMs
  const ten = await topo("bench-one", { m: {} }, true);
  const many = [ten];
  for (let i = 1; i < 10; i++) many.push(await topo("bench-one", { m: {} }, true));
  try {
    await Promise.all(many.map((t) => t.machines[0].start()));
    await new Promise((r) => setTimeout(r, 3000));
    const pss = many.map((t) => {
      const rollup = fs.readFileSync(`/proc/${t.machines[0].pid}/smaps_rollup`, "utf8");
      return Number(/^Pss:\s+(\d+)/m.exec(rollup)[1]) / 1024;
    });
    const avg = pss.reduce((a, b) => a + b, 0) / pss.length;
    row("PSS of ten restored idle 1 GiB VMs, each (mean)", `${avg.toFixed(0)} MiB`, "≤ 200 MiB");
    row("  so many fit in this host's memory", `${Math.floor(os.totalmem() / 2 ** 20 / avg)}`, "≥ 20");
  } finally {
    await Promise.all(many.map((t) => t.close()));
  }
} finally {
  cleanup();
}
