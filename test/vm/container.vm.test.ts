import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Machine } from "../../src/machine/machine.js";
import { Logger } from "../../src/session/logger.js";
import { startMachines, type Rig } from "../../src/session/start.js";
import { isRunning } from "../../src/util/proc.js";
import { descendants, livePids, pidsOf } from "./helpers.js";

// Containers (SPEC §9) on real systemd-nspawn, beside a real VM on one vlan: the Machine API,
// the network (both kinds, the firewall inside, block, forwardPort, isolation from the host),
// power, and that nothing is left behind.
let rig: Rig<"vm", "server" | "peer">;
let server: Machine;
let peer: Machine;
let vm: Machine;
const resultDir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-containers-"));
const logger = new Logger(path.join(resultDir, "log.txt"), () => undefined);
const typed = { input: new PassThrough(), output: new PassThrough() };
let screen = "";
typed.output.on("data", (d: Buffer) => (screen += d.toString()));
const nspawnBefore = pidsOf("systemd-nspawn");

const def = {
  containers: {
    server: {
      networking: { firewall: { allowedTCPPorts: [80] } },
      services: { nginx: { enable: true, virtualHosts: { server: {} } } },
      environment: { systemPackages: ["socat"] },
    },
    peer: { environment: { systemPackages: ["curl", "socat"] } },
  },
  nodes: {
    vm: { environment: { systemPackages: ["curl", "socat"] }, networking: { firewall: { allowedTCPPorts: [8000] } } },
  },
};

beforeAll(async () => {
  rig = await startMachines(def, {
    name: "containers",
    resultDir,
    start: "on-use",
    logger,
    terminal: () => typed,
  });
  ({ server, peer, vm } = rig as unknown as Record<"server" | "peer" | "vm", Machine>);
  await Promise.all([server.start(), peer.start()]);
  console.log(
    `container ready (systemd answering, boot queued): server ${server.systemdReadyMs} ms, peer ${peer.systemdReadyMs} ms`,
  );
});

afterAll(async () => {
  await rig?.close();
  fs.rmSync(resultDir, { recursive: true, force: true });
});

describe("a container", () => {
  it("runs systemd as PID 1 in its own namespaces, with its own hostname and boot id", async () => {
    expect(server.origin).toBe("booted");
    expect((await server.succeed("cat /proc/1/comm")).trim()).toBe("systemd");
    expect((await server.succeed("hostname")).trim()).toBe("server");
    const hostBoot = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    expect((await server.succeed("cat /proc/sys/kernel/random/boot_id")).trim()).not.toBe(hostBoot);
    // start() resolved with the boot transaction queued: systemd helpers work at once
    await server.waitForUnit("nginx.service");
    await server.waitForUnit("multi-user.target");
    expect(await server.getUnitProperty("nginx.service", "ActiveState")).toBe("active");
  });

  it("frames commands as a VM does: any byte, stderr apart, status, timeouts that kill", async () => {
    const r = await server.execute("printf 'a\\0b\\xff'; echo oops >&2; exit 3");
    expect(r.status).toBe(3);
    expect(Buffer.from(r.stdout, "binary").length).toBeGreaterThan(0);
    expect(r.stdout.startsWith("a\0b")).toBe(true);
    await expect(server.succeed("false")).rejects.toThrow(/exit status 1/);
    expect(await server.fail("false")).toBe("");
    await expect(server.execute("sleep 60; echo never", { timeout: 1 })).rejects.toThrow(/timed out after 1 s/);
    expect((await server.succeed("pgrep -x sleep || echo none")).trim()).toBe("none");
  });

  it("writes a command's output to the log line by line as it runs", async () => {
    await server.succeed("for i in 1 2 3; do echo streamed-$i; echo to-stderr-$i >&2; sleep 0.3; done");
    // the log file is a stream: its last lines may still be on their way to the disk
    await vi.waitFor(
      () => {
        const log = fs.readFileSync(path.join(resultDir, "log.txt"), "utf8");
        for (const i of [1, 2, 3]) {
          expect(log).toMatch(new RegExp(`server # streamed-${i}\n`));
          expect(log).toMatch(new RegExp(`server # to-stderr-${i}\n`));
        }
        // the first line was logged before the command ended (0.9 s later), not with its end
        const at = (re: RegExp) => Number(re.exec(log)?.[1]);
        expect(at(/^ *([\d.]+)s .*server # streamed-1$/m)).toBeLessThan(
          at(/^ *([\d.]+)s .*\(finished: must succeed: for i/m),
        );
      },
      { timeout: 5000 },
    );
  });

  it("copies files in and out, binary-safe", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-ctfiles-"));
    try {
      const data = crypto.randomBytes(1 << 20);
      fs.mkdirSync(path.join(dir, "d"));
      fs.writeFileSync(path.join(dir, "d", "blob"), data);
      await server.copyFromHost(path.join(dir, "d"), "/root/copied");
      expect((await server.succeed("sha256sum /root/copied/blob")).split(" ")[0]).toBe(
        crypto.createHash("sha256").update(data).digest("hex"),
      );
      const back = await server.copyFromMachine("/root/copied", path.join(dir, "back"));
      expect(fs.readFileSync(path.join(back, "blob")).equals(data)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives shell() a real terminal", async () => {
    const done = server.shell();
    const until = async (re: RegExp) => {
      for (let i = 0; i < 100 && !re.test(screen); i++) await new Promise((r) => setTimeout(r, 100));
      expect(screen).toMatch(re);
    };
    await until(/root shell on server/);
    typed.input.write("tty; echo answer-$((6*7))\r");
    await until(/answer-42/);
    expect(screen).toMatch(/\/dev\/pts\/\d+/);
    typed.input.write("exit\r");
    await done;
    expect(screen).toContain("left the shell on server");
  });

  it("has useradd and passwd, as NixOS tests expect", async () => {
    await server.succeed("useradd -m alice", "echo alice:secret | chpasswd", "passwd -S alice | grep -q ' P '");
    expect((await server.succeed("su - alice -c whoami")).trim()).toBe("alice");
  });

  it("says what systemd says of a unit it cannot load, at once", async () => {
    await server.succeed(
      "printf '[Service]\\nType=simple\\n' > /etc/systemd/system/broken.service",
      "systemctl daemon-reload",
    );
    // a verdict at once, not a timeout: waiting cannot make systemd load it
    await expect(server.waitForUnit("broken.service", { timeout: 120 })).rejects.toThrow(
      /LoadState is bad-setting[\s\S]*systemd-analyze verify/,
    );
  });

  it("says at the call that what needs a VM is not there", async () => {
    await expect(server.screenshot("x")).rejects.toThrow(/server is a container, not a VM: screenshot\(\) needs QEMU/);
    await expect(server.qmp("query-status")).rejects.toThrow(/declare the machine under `nodes`/);
  });
});

describe("a container's network", () => {
  it("reaches containers and VMs on its vlan by name, and they reach it", async () => {
    expect(await peer.succeed("curl -sf http://server/")).toContain("Welcome to nginx!");
    expect(await vm.succeed("curl -sf http://server/")).toContain("Welcome to nginx!");
    await vm.succeed("(socat TCP-LISTEN:8000,fork,reuseaddr SYSTEM:'echo from-vm' >/dev/null 2>&1 &)");
    await vm.waitForOpenPort(8000);
    expect(await peer.succeed("socat -T 5 - TCP:vm:8000 </dev/null")).toContain("from-vm");
    expect(await server.succeed("grep -w vm /etc/hosts")).toContain("192.168.1.");
  });

  it("has a firewall of its own", async () => {
    // (start() returns while the container's boot goes on: its rules are in once the unit is up)
    await server.waitForUnit("firewall.service");
    await server.succeed("(socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:'echo hi' >/dev/null 2>&1 &)");
    await server.waitForOpenPort(8080);
    await peer.fail("nc -z -w 2 server 8080");
    await peer.succeed("nc -z -w 2 server 80");
  });

  it("drops off the vlan when blocked and comes back when unblocked", async () => {
    await peer.block();
    await server.fail("ping -c 1 -W 1 peer");
    await peer.unblock();
    await server.waitUntilSucceeds("ping -c 1 -W 1 peer", 30);
    // on the report's timeline, in order
    const faults = logger.marks.filter((m) => m.kind === "fault" && m.machine === "peer").map((m) => m.label);
    expect(faults.slice(-2)).toEqual(["blocked", "unblocked"]);
  });

  it("forwards a host port to a container port", async () => {
    const port = await freePort();
    await server.forwardPort(port, 80);
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port, path: "/" }, (res) => {
          let b = "";
          res.on("data", (d: Buffer) => (b += d.toString()));
          res.on("end", () => resolve(b));
        })
        .on("error", reject);
    });
    expect(body).toContain("Welcome to nginx!");
  });

  it("has no route to the host or the internet", async () => {
    const listener = net.createServer((c) => c.end("host\n"));
    await new Promise<void>((r) => listener.listen(0, "0.0.0.0", () => r()));
    const port = (listener.address() as net.AddressInfo).port;
    try {
      const hostAddrs = Object.values(os.networkInterfaces())
        .flat()
        .filter((a) => a && a.family === "IPv4")
        .map((a) => a!.address);
      expect(hostAddrs.length).toBeGreaterThan(0);
      for (const a of hostAddrs) await server.fail(`nc -z -w 2 ${a} ${port}`);
      expect((await server.execute("ip route get 1.1.1.1 2>&1")).stdout).toMatch(/unreachable/i);
      expect((await server.succeed("ip -o link | awk -F': ' '{print $2}' | sort | xargs")).trim()).toBe("eth1 lo");
    } finally {
      listener.close();
    }
  });
});

describe("a container's power", () => {
  it("keeps its files across shutdown/start, reboot and a crash", async () => {
    await peer.succeed("echo kept > /var/lib/vmrig-kept");
    const boot1 = (await peer.succeed("cat /proc/sys/kernel/random/boot_id")).trim();
    await peer.shutdown();
    expect(await peer.isUp()).toBe(false);
    await peer.start();
    expect((await peer.succeed("cat /var/lib/vmrig-kept")).trim()).toBe("kept");
    const boot2 = (await peer.succeed("cat /proc/sys/kernel/random/boot_id")).trim();
    expect(boot2).not.toBe(boot1);
    await peer.reboot();
    expect((await peer.succeed("cat /proc/sys/kernel/random/boot_id")).trim()).not.toBe(boot2);
    expect((await peer.succeed("cat /var/lib/vmrig-kept")).trim()).toBe("kept");
    await peer.crash();
    expect(await peer.isUp()).toBe(false);
    await peer.start();
    expect((await peer.succeed("cat /var/lib/vmrig-kept")).trim()).toBe("kept");
    await peer.succeed("curl -sf http://server/ >/dev/null");
  });

  it("leaves no container, mount or namespace behind", async () => {
    const pids = [server.pid, peer.pid].filter((p): p is number => p !== undefined);
    const tree = pids.flatMap(descendants);
    expect(tree.length).toBeGreaterThan(pids.length); // systemd and its services
    await rig.close();
    for (const p of [...pids, ...tree]) expect(isRunning(p), `process ${p}`).toBe(false);
    expect(livePids("systemd-nspawn").filter((p) => !nspawnBefore.includes(p))).toEqual([]);
    expect(fs.readFileSync("/proc/self/mountinfo", "utf8")).not.toMatch(/vmrig-(server|peer)/);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
