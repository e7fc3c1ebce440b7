// A soak: examples run back to back, N rounds, each through the CLI as a user runs them
// (`vmrig run FILE --rerun`, boot snapshots on). After every run it looks for anything
// the run left on the host. Prints passes, failures, the spread of wall times per
// example and every leftover; exits 1 if anything failed or leaked. No assertions on time.
//   node bench/soak.mjs [--rounds N] [example files…]
// Default: client-server, client-server-containers and etcd-partition, 20 rounds.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cleanup, median, root, rowPrinter, s, scratch } from "./lib.mjs";

const args = process.argv.slice(2);
const roundsAt = args.indexOf("--rounds");
const rounds = roundsAt >= 0 ? Number(args[roundsAt + 1]) : 20;
const given = args.filter((a, i) => a.endsWith(".vmrig.ts") && i !== roundsAt + 1);
const files = given.length
  ? given.map((f) => path.resolve(f))
  : ["client-server", "client-server-containers", "etcd-partition"].map((n) =>
      path.join(root, "examples", `${n}.vmrig.ts`),
    );
const row = rowPrinter(34, 10);

/** The command lines of processes whose executable is one vmrig starts. */
function processes() {
  const out = [];
  for (const p of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
      if (/\) Z /.test(stat)) continue; // a zombie is dead: our PID 1 may just not have reaped it
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").filter(Boolean);
      const exe = path.basename(cmd[0] ?? "");
      if (/^(qemu-system|vde_switch|vde_plug|systemd-nspawn|mmdebstrap|socat|ffmpeg|tesseract)/.test(exe))
        out.push(`${p} ${cmd.join(" ").slice(0, 120)}`);
    } catch {
      // gone meanwhile
    }
  }
  return out.sort();
}

/** What the host holds that a vmrig run could have made: processes, temp dirs, namespaces, mounts, RAM files, holds. */
function hostState() {
  const ls = (d, re) =>
    fs.existsSync(d)
      ? fs
          .readdirSync(d)
          .filter((e) => re.test(e))
          .map((e) => path.join(d, e))
      : [];
  const cache = process.env.VMRIG_CACHE_DIR ?? path.join(os.homedir(), ".cache", "vmrig");
  return [
    ...processes().map((p) => `process ${p}`),
    ...ls(os.tmpdir(), /^vmrig-[A-Za-z0-9]{6}$/).map((d) => `temp dir ${d}`),
    ...ls("/run/netns", /vmrig/).map((d) => `network namespace ${d}`),
    ...ls("/dev/shm", /vmrig/).map((d) => `RAM file ${d}`),
    ...ls(path.join(cache, "in-use"), /\.json$/).map((d) => `store hold ${d}`),
    ...fs
      .readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .filter((l) => l.includes("vmrig"))
      .map((l) => `mount ${l.split(" ")[4]}`),
  ].sort();
}

const baseline = new Set(hostState());
const runs = new Map(files.map((f) => [f, []]));
const leaks = [];
try {
  console.log(`host: ${os.cpus().length} cores; ${rounds} rounds of ${files.map((f) => path.basename(f)).join(", ")}`);
  if (baseline.size) console.log(`already on the host before the soak (not counted):\n  ${[...baseline].join("\n  ")}`);
  for (let round = 1; round <= rounds; round++) {
    for (const file of files) {
      const out = scratch();
      const t0 = performance.now();
      const r = spawnSync("node", [path.join(root, "dist/cli/main.js"), "run", file, "--rerun", "--output-dir", out], {
        encoding: "utf8",
        timeout: 20 * 60_000,
      });
      const wall = performance.now() - t0;
      const left = hostState().filter((x) => !baseline.has(x));
      const ok = r.status === 0;
      runs.get(file).push({ ok, wall });
      if (left.length) leaks.push({ round, file, left });
      console.log(
        `round ${String(round).padStart(2)} ${path.basename(file).padEnd(34)} ${ok ? "passed" : `FAILED (exit ${r.status})`} ${s(wall).padStart(9)}${left.length ? `  LEFT: ${left.join("; ")}` : ""}`,
      );
      if (!ok) console.log((r.stdout + r.stderr).split("\n").slice(-25).join("\n"));
      cleanup();
    }
  }
} finally {
  cleanup();
}

console.log("");
let failures = 0;
for (const [file, xs] of runs) {
  const walls = xs.map((x) => x.wall);
  const failed = xs.filter((x) => !x.ok).length;
  failures += failed;
  // a flake: a failure between passes of the same example (it passed before or after)
  const flakes = xs.filter((x, i) => !x.ok && xs.some((y, j) => j !== i && y.ok)).length;
  console.log(path.basename(file));
  row("  runs, passed, failed, flaky", `${xs.length}, ${xs.length - failed}, ${failed}, ${flakes}`);
  if (walls.length) {
    row("  wall time: min / median / max", `${s(Math.min(...walls))} / ${s(median(walls))} / ${s(Math.max(...walls))}`);
    row("  spread (max / min)", `${(Math.max(...walls) / Math.min(...walls)).toFixed(2)}×`);
  }
}
row("runs that left something behind", String(leaks.length));
process.exitCode = failures || leaks.length ? 1 : 0;
