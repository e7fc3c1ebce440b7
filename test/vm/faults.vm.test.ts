import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Machine } from "../../src/machine/machine.js";
import { startMachines, type Rig } from "../../src/session/start.js";

// Network faults (SPEC §10), each measured on real VMs: ping RTT for delay and jitter, the
// loss rate over many packets, throughput for rate, duplicates, both directions of a partition.
let rig: Rig<"a" | "b" | "c">;
let a: Machine;
let b: Machine;
const resultDir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-faults-"));

const nodes = { a: {}, b: { networking: { firewall: { allowedTCPPorts: [5001] } } }, c: {} };

/** ping statistics: [loss %, avg RTT ms, mdev ms] and how many duplicates came back. */
async function ping(
  from: Machine,
  to: string,
  args: string,
): Promise<{ loss: number; min: number; avg: number; mdev: number; dups: number }> {
  const out = (await from.execute(`ping ${args} ${to} 2>&1`, { timeout: 120 })).stdout;
  const loss = Number(/([\d.]+)% packet loss/.exec(out)?.[1] ?? NaN);
  const rtt = /= ([\d.]+)\/([\d.]+)\/[\d.]+\/([\d.]+) ms/.exec(out);
  return {
    loss,
    min: Number(rtt?.[1] ?? NaN),
    avg: Number(rtt?.[2] ?? NaN),
    mdev: Number(rtt?.[3] ?? NaN),
    dups: Number(/\+(\d+) duplicates/.exec(out)?.[1] ?? 0),
  };
}

beforeAll(async () => {
  rig = await startMachines({ nodes }, { name: "faults", resultDir, print: false });
  ({ a, b } = rig);
});

afterAll(async () => {
  await rig?.close();
  fs.rmSync(resultDir, { recursive: true, force: true });
});

describe("netem", () => {
  it("delays every packet the machine sends by what was asked, with jitter, until cleared", async () => {
    // the fastest round trip: a delay adds to every packet, while the first pings of a
    // just-restored machine (a cold translation cache under TCG) inflate the average
    const base = await ping(a, "b", "-c 10 -i 0.2");
    await a.netem({ delay: 150 });
    const delayed = await ping(a, "b", "-c 10 -i 0.2");
    expect(delayed.min - base.min).toBeGreaterThan(130);
    expect(delayed.min - base.min).toBeLessThan(250);
    await a.netem({ delay: 150, jitter: 60 });
    const jittered = await ping(a, "b", "-c 20 -i 0.2");
    expect(jittered.mdev).toBeGreaterThan(15);
    await a.netem(null);
    const cleared = await ping(a, "b", "-c 5 -i 0.2");
    console.log(
      `netem delay 150: RTT ${base.avg} → ${delayed.avg} ms; jitter 60: mdev ${jittered.mdev} ms; cleared: ${cleared.avg} ms`,
    );
    expect(cleared.avg).toBeLessThan(base.avg + 60);
  });

  it("loses about the share of packets asked for", async () => {
    await a.netem({ loss: 30 });
    const r = await ping(a, "b", "-c 300 -i 0.02 -W 1");
    await a.netem(null);
    console.log(`netem loss 30: ${r.loss}% of 300 pings lost`);
    expect(r.loss).toBeGreaterThan(15);
    expect(r.loss).toBeLessThan(45);
  });

  it("duplicates packets", async () => {
    await a.netem({ duplicate: 50 });
    const r = await ping(a, "b", "-c 40 -i 0.05");
    await a.netem(null);
    console.log(`netem duplicate 50: ${r.dups} duplicates of 40 pings`);
    expect(r.dups).toBeGreaterThan(5);
  });

  it("limits the rate a machine sends at", async () => {
    await b.succeed("(nc -l 5001 > /dev/null &) ; sleep 0.5");
    await a.netem({ rate: 2000 }); // kbit/s
    const secs = Number(
      (
        await a.succeed(
          's=$(date +%s.%N); head -c 500000 /dev/zero | nc -N -w 30 b 5001; e=$(date +%s.%N); awk "BEGIN{print $e - $s}"',
        )
      ).trim(),
    );
    await a.netem(null);
    console.log(`netem rate 2000 kbit/s: 500 kB in ${secs} s = ${((500_000 * 8) / secs / 1000).toFixed(0)} kbit/s`);
    // 4 Mbit at 2 Mbit/s: about 2 s
    expect(secs).toBeGreaterThan(1.5);
    expect(secs).toBeLessThan(5);
  });

  it("refuses a vlan the machine is not on and a bad value", async () => {
    await expect(a.netem({ delay: 10 }, { vlan: 9 })).rejects.toThrow("the machine is not on vlan 9");
    await expect(a.netem({ loss: -1 })).rejects.toThrow("netem loss must be a number ≥ 0");
    await a.netem({ delay: 10 }, { vlan: 1 });
    await a.netem(null, { vlan: 1 });
  });
});

describe("partitions", () => {
  it("cuts both directions between two groups, leaves the rest, and heals", async () => {
    await rig.partition([a], [b]);
    await a.fail("ping -c 1 -W 2 b");
    await b.fail("ping -c 1 -W 2 a");
    await b.fail("ping -6 -c 1 -W 2 a");
    await a.succeed("ping -c 1 -W 2 c");
    await b.succeed("ping -c 1 -W 2 c");
    await rig.heal();
    await a.succeed("ping -c 1 -W 5 b");
    await b.succeed("ping -6 -c 1 -W 5 a");
  });
});
