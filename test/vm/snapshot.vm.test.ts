import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NodeModule } from "../../src/config/eval.js";
import { Logger } from "../../src/session/logger.js";
import { createTopology, type Topology } from "../../src/session/topology.js";
import { checkpointDir, restoreCheckpoint, takeCheckpoint } from "../../src/machine/checkpoint.js";
import type { Machine } from "../../src/machine/machine.js";
import { VmrigError } from "../../src/util/errors.js";
import { pollFor } from "../../src/util/poll.js";
import { ownQemus } from "./helpers.js";

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
    // the guest's clock read within the call: between the host's times before and after it
    // (a first command after a restore may take seconds on a loaded host)
    const before = Date.now() / 1000;
    const guest = Number((await a2.succeed("date +%s.%N")).trim());
    const after = Date.now() / 1000;
    expect(guest).toBeGreaterThan(before - 1);
    expect(guest).toBeLessThan(after + 1);
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

  it("fails restore() naming the machine and the signal when QEMU is killed while the state loads; the checkpoint restores after", async () => {
    const dir = checkpointDir(run1.stateDir);
    await a1.succeed("echo kept > /root/cp2; sync");
    const cp = await takeCheckpoint(
      run1.machines.map((m) => m.internals),
      dir,
      "killed",
    );
    await a1.succeed("echo changed > /root/cp2");
    const running = ownQemus(run1.stateDir); // the machines now (restored before: their QEMUs have -incoming too)
    const restoring = restoreCheckpoint(cp, dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    // the first restoring QEMU (loading a whole RAM takes seconds under TCG): killed as the OOM killer would
    const victim = await pollFor(
      60,
      () => Promise.resolve(ownQemus(run1.stateDir, "-incoming").find((p) => !running.includes(p))),
      () => new Error("no restoring QEMU appeared"),
      5,
    );
    process.kill(victim, "SIGKILL");
    const e = (await restoring) as VmrigError;
    expect(e).toBeInstanceOf(VmrigError);
    expect(e.message).toContain("QEMU exited during the restore (killed by SIGKILL)");
    expect(["a", "b"]).toContain(e.machine);
    expect(e.call).toBe('restore("killed")');
    expect(e.hint).toMatch(/killed by SIGKILL, and not by vmrig: the kernel's OOM killer/);
    // no QEMU this restore started is left (a killed QEMU takes a moment to go)
    const started = () => ownQemus(run1.stateDir).filter((p) => !running.includes(p));
    await pollFor(
      10,
      () => Promise.resolve(started().length === 0 || undefined),
      () => new Error(`QEMUs left: ${started().join(", ")}`),
      100,
    );
    // nothing of the checkpoint was lost: it restores
    await restoreCheckpoint(cp, dir);
    expect((await a1.succeed("cat /root/cp2")).trim()).toBe("kept");
    await a1.succeed("ping -c 1 -W 5 b");
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

describe("QEMU killed during a boot snapshot's first boot", () => {
  it("fails start() naming the signal, leaves no snapshot or half-written entry, and the next start saves one", async () => {
    const nodes = { killedsave: { environment: { etc: { "probe-kill": { text: `${Date.now()}\n` } } } } };
    const store = path.join(process.env.VMRIG_CACHE_DIR ?? path.join(os.homedir(), ".cache/vmrig"), "store");
    // (earlier runs of this test left theirs: each run's configuration is its own)
    const snapshotsOfKilledsave = () =>
      fs.readdirSync(store).filter((n) => n.includes("-snapshot-killedsave") && !n.endsWith(".lock"));
    const earlier = snapshotsOfKilledsave();
    const first = await topology("killedsave", nodes);
    const [m1] = first.machines as [Machine];
    const starting = m1.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    // the isolated first boot whose end would be saved, killed midway as the OOM killer would
    const victim = await pollFor(
      600,
      () => Promise.resolve(ownQemus("killedsave")[0]),
      () => new Error("no QEMU for killedsave appeared"),
      50,
    );
    await new Promise((r) => setTimeout(r, 3000));
    process.kill(victim, "SIGKILL");
    const e = (await starting) as VmrigError;
    expect(e).toBeInstanceOf(VmrigError);
    expect(e.message).toContain("QEMU exited during boot (killed by SIGKILL)");
    expect(e.machine).toBe("killedsave");
    expect(e.call).toBe("start()");
    expect(ownQemus("killedsave")).toEqual([]);
    await first.close();
    expect(snapshotsOfKilledsave().filter((n) => !earlier.includes(n))).toEqual([]);

    const from = lines.length;
    const second = await topology("killedsave", nodes);
    const [m2] = second.machines as [Machine];
    await m2.start();
    expect(lines.slice(from).join("\n")).toMatch(/killedsave: saved a boot snapshot/);
    expect(m2.origin).toMatch(/^from boot snapshot /);
    await second.close();
  });
});
