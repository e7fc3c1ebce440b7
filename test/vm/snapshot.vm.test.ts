import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NodeModule } from "../../src/config/eval.js";
import { Logger } from "../../src/session/logger.js";
import { createTopology, type Topology } from "../../src/session/topology.js";
import { checkpointDir, restoreCheckpoint, takeCheckpoint } from "../../src/machine/checkpoint.js";
import type { Machine } from "../../src/machine/machine.js";

// Boot snapshots (SPEC §7): two runs of one test at once (the same machines, so the same
// snapshots), a machine whose boot needs a peer, and checkpoints within a run.
const dirs: string[] = [];
const lines: string[] = [];
const topologies: Topology[] = [];

async function topology(name: string, nodes: Record<string, NodeModule>): Promise<Topology> {
  const resultDir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-snap-"));
  dirs.push(resultDir);
  const logger = new Logger(path.join(resultDir, "log.txt"), (l) => lines.push(l));
  const t = await createTopology(
    { name, nodes },
    { logger, resultDir, sourceDir: process.cwd(), accel: "auto", keepVmState: false },
  );
  topologies.push(t);
  return t;
}

const pair = { a: {}, b: {} };
let run1: Topology;
let run2: Topology;
let a1: Machine;
let b1: Machine;
let a2: Machine;

beforeAll(async () => {
  run1 = await topology("snap", pair);
  run2 = await topology("snap", pair);
  [a1, b1] = run1.machines as [Machine, Machine];
  [a2] = run2.machines as [Machine];
  await a1.start(); // restores, or saves the snapshot first
  await a2.start(); // certainly restores: the snapshot exists now
});

afterAll(async () => {
  await Promise.all(topologies.map((t) => t.close()));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe("boot snapshots", () => {
  it("restores a machine that has the host's time", async () => {
    expect(a2.origin).toMatch(/^from boot snapshot /);
    expect(lines.some((l) => /a: restored from boot snapshot \w+ in [\d.]+ s/.test(l))).toBe(true);
    const guest = Number((await a2.succeed("date +%s.%N")).trim());
    expect(Math.abs(guest - Date.now() / 1000)).toBeLessThan(2);
    await a2.waitForUnit("multi-user.target", { timeout: 30 });
  });

  it("gives two clones of one snapshot their own randomness and their own disks", async () => {
    const r1 = await a1.succeed("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
    const r2 = await a2.succeed("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
    expect(r1).toHaveLength(64);
    expect(r1).not.toBe(r2);
    await a1.succeed("echo one > /root/clone-file; sync");
    await a2.fail("test -e /root/clone-file");
    await a2.succeed("echo two > /root/other-file; sync");
    await a1.fail("test -e /root/other-file");
    expect((await a1.succeed("cat /root/clone-file")).trim()).toBe("one");
  });

  it("brings the vlan links up: restored machines reach each other", async () => {
    await b1.start();
    expect(b1.origin).toMatch(/boot snapshot/);
    await a1.succeed("ping -c 1 -W 5 b");
    await b1.succeed("ping -c 1 -W 5 -6 a");
    await a1.succeed("ip link show eth1 | grep -q 'state UP'");
  });

  it("boots, and does not restore, a machine whose boot needs a peer", async () => {
    const t = await topology("snap-needy", {
      peer: {},
      needy: {
        systemd: {
          services: {
            "need-peer": {
              wantedBy: ["multi-user.target"],
              serviceConfig: { Type: "oneshot", RemainAfterExit: true, ExecStart: "ping -c 1 -W 3 peer" },
            },
          },
        },
      },
    });
    const [needy, peer] = t.machines as [Machine, Machine];
    await peer.start();
    await needy.start();
    expect(needy.origin).toBe("booted");
    expect(
      lines.some((l) =>
        /needy: (no boot snapshot|booting, not restoring): its first boot did not finish clean without its peers/.test(
          l,
        ),
      ),
    ).toBe(true);
    await needy.waitForUnit("need-peer.service", { timeout: 120 });
  });
});

describe("disks live for the whole run", () => {
  it("keeps what was written across shutdown and start, and across crash and start", async () => {
    await b1.succeed("echo kept > /root/survives; sync");
    await b1.shutdown();
    expect(await b1.isUp()).toBe(false);
    await b1.start();
    expect(b1.origin).toBe("booted"); // its disk is no longer the image: no snapshot fits it
    expect((await b1.succeed("cat /root/survives")).trim()).toBe("kept");
    await b1.succeed("echo also > /root/after-crash; sync");
    await b1.crash();
    await b1.start();
    expect((await b1.succeed("cat /root/survives /root/after-crash")).split("\n").slice(0, 2)).toEqual([
      "kept",
      "also",
    ]);
  });
});

describe("checkpoints", () => {
  it("brings every machine back to the checkpoint, more than once", async () => {
    const dir = checkpointDir(run1.stateDir);
    const cores = run1.machines.map((m) => m.internals);
    await a1.succeed("echo before > /root/cp; sync");
    await b1.succeed("echo b-before > /root/cp");
    const cp = await takeCheckpoint(cores, dir, "base");
    await a1.succeed("echo after > /root/cp; touch /root/later");
    await b1.succeed("rm /root/cp");
    await restoreCheckpoint(cp, dir);
    expect(a1.origin).toBe('from checkpoint "base"');
    expect((await a1.succeed("cat /root/cp")).trim()).toBe("before");
    await a1.fail("test -e /root/later");
    expect((await b1.succeed("cat /root/cp")).trim()).toBe("b-before");
    await a1.succeed("ping -c 1 -W 5 b");
    const guest = Number((await a1.succeed("date +%s")).trim());
    expect(Math.abs(guest - Date.now() / 1000)).toBeLessThan(3);
    // again, after more changes: the checkpoint's disks were not written by the first restore
    await a1.succeed("echo third > /root/cp; touch /root/later2; sync");
    await restoreCheckpoint(cp, dir);
    expect((await a1.succeed("cat /root/cp")).trim()).toBe("before");
    await a1.fail("test -e /root/later2");
  });
});

describe("a damaged or stale boot snapshot", () => {
  it("is found before it is loaded, removed, booted instead and saved anew (damaged files; an image built again)", async () => {
    // a configuration of its own (a file with this run's time), so its snapshot is this test's
    const nodes = { damaged: { environment: { etc: { "probe-damage": { text: `${Date.now()}\n` } } } } };
    const first = await topology("damaged", nodes);
    const [m1] = first.machines as [Machine];
    await m1.start();
    expect(m1.origin).toMatch(/^from boot snapshot /);
    await first.close();
    const saved = /damaged: restored from boot snapshot (\w+)/.exec(lines.join("\n"))?.[1];
    expect(saved).toBeDefined();
    const store = path.join(process.env.VMRIG_CACHE_DIR ?? path.join(os.homedir(), ".cache/vmrig"), "store");
    const entry = fs.readdirSync(store).find((e) => e.startsWith(saved!) && e.endsWith("-snapshot-damaged"));
    expect(entry).toBeDefined();
    // a disk that filled up while it was copied: the RAM file is cut short
    const ram = path.join(store, entry!, "ram");
    fs.truncateSync(ram, Math.floor(fs.statSync(ram).size / 2));

    const from = lines.length;
    const second = await topology("damaged", nodes);
    const [m2] = second.machines as [Machine];
    await m2.start();
    const said = lines.slice(from).join("\n");
    expect(said).toMatch(
      new RegExp(`damaged: the boot snapshot ${saved} is damaged \\(ram is \\d+ bytes, \\d+ when saved\\): removed`),
    );
    expect(said).toMatch(/damaged: saved a boot snapshot/);
    expect((await m2.succeed("cat /etc/probe-damage")).trim()).toBe(
      nodes.damaged.environment.etc["probe-damage"].text.trim(),
    );
    await second.close();
    // the new snapshot is whole: the next start restores it
    const third = await topology("damaged", nodes);
    const [m3] = third.machines as [Machine];
    await m3.start();
    expect(m3.origin).toMatch(/^from boot snapshot /);
    await third.close();

    // The store budget evicted the image and a later run built it again: same path, other
    // bytes (builds are not reproducible). The snapshot's overlay no longer fits it.
    const image = fs
      .readdirSync(store)
      .filter((e) => e.endsWith("-image-damaged"))
      .map((e) => path.join(store, e, "root.img"))
      .filter((f) => fs.existsSync(f))
      .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
    expect(image).toBeDefined();
    const now = new Date();
    fs.utimesSync(image!, now, now);
    const at = lines.length;
    const fourth = await topology("damaged", nodes);
    const [m4] = fourth.machines as [Machine];
    await m4.start();
    const told = lines.slice(at).join("\n");
    expect(told).toMatch(/damaged: the boot snapshot \w+ is stale \(its disk image was built again after it was saved/);
    expect(told).toMatch(/damaged: saved a boot snapshot/);
    await m4.succeed("test -f /etc/probe-damage");
    await fourth.close();
  });
});
