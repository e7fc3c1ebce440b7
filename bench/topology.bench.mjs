// Two machines booted in parallel → both ready, and copyFromHost / copyFromMachine
// of 100 MB. Prints numbers; asserts nothing. `node bench/topology.bench.mjs`
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Logger } from "../dist/session/logger.js";
import { createTopology } from "../dist/session/topology.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-bench-"));
const row = (what, value) => console.log(`${what.padEnd(48)} ${value.padStart(12)}`);
const logger = new Logger(path.join(dir, "log.txt"), () => {});
const topo = await createTopology(
  { name: "bench", nodes: { a: {}, b: {} } },
  { logger, resultDir: dir, sourceDir: process.cwd(), accel: "auto", keepVmState: false, snapshots: false },
);
try {
  const [a, b] = topo.machines;
  const t0 = performance.now();
  await Promise.all([a.start(), b.start()]);
  const both = performance.now() - t0;
  row(`two machines in parallel → both ready (${topo.accel})`, `${(both / 1000).toFixed(2)} s`);
  row("  of which: shell answering (a, b)", `${(a.bootMs / 1000).toFixed(1)} s, ${(b.bootMs / 1000).toFixed(1)} s`);
  let t = performance.now();
  await a.succeed("ping -c 1 -W 5 b");
  row("first ping a → b", `${(performance.now() - t).toFixed(0)} ms`);

  const file = path.join(dir, "100M.bin");
  fs.writeFileSync(file, randomBytes(100 * 1024 * 1024));
  t = performance.now();
  await a.copyFromHost(file, "/root/100M.bin");
  const up = performance.now() - t;
  row("copyFromHost 100 MiB", `${(up / 1000).toFixed(2)} s  (${(100 / (up / 1000)).toFixed(0)} MiB/s)`);
  t = performance.now();
  await a.copyFromMachine("/root/100M.bin", path.join(dir, "back"));
  const down = performance.now() - t;
  row("copyFromMachine 100 MiB", `${(down / 1000).toFixed(2)} s  (${(100 / (down / 1000)).toFixed(0)} MiB/s)`);
  const same = fs.readFileSync(file).equals(fs.readFileSync(path.join(dir, "back", "100M.bin")));
  row("round trip intact", String(same));
} finally {
  await topo.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
