import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Logger } from "../../src/session/logger.js";
import { createTopology, type Topology } from "../../src/session/topology.js";
import type { Machine } from "../../src/machine/machine.js";

// Options rendered by image/render.ts, checked on real VMs (unit tests check the rendering).
let topo: Topology;
let server: Machine;
let client: Machine;
let resultDir: string;

beforeAll(async () => {
  resultDir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-options-"));
  topo = await createTopology(
    {
      name: "options",
      nodes: {
        server: {
          virtualisation: { vlans: [1, 2] },
          boot: { kernel: { sysctl: { "vm.swappiness": 7 } }, kernelParams: ["vmrig.test=42", "quiet"] },
          systemd: {
            tmpfiles: { rules: ["d /var/lib/from-tmpfiles 0750 www-data www-data -"] },
            // started by alice's own systemd when she logs in (the autologin below)
            user: {
              services: {
                hello: {
                  script: 'echo "hello from $USER, $XDG_RUNTIME_DIR" > /tmp/user-unit-ran',
                  wantedBy: ["default.target"],
                  serviceConfig: { Type: "oneshot", RemainAfterExit: true },
                },
              },
            },
          },
          services: { getty: { autoLoginUser: "alice" } },
          users: { users: { alice: { isNormalUser: true } } },
          fileSystems: { "/mnt/scratch-1": { device: "tmpfs", fsType: "tmpfs", options: ["size=16m", "mode=1777"] } },
          environment: {
            etc: { "motd.d/vmrig": { text: "hello from vmrig\n", mode: "0640", user: "www-data", group: "www-data" } },
          },
          networking: {
            firewall: {
              allowedTCPPortRanges: [{ from: 8000, to: 8002 }],
              interfaces: { eth1: { allowedTCPPorts: [7001] } },
              trustedInterfaces: ["eth2"],
              extraInputRules: "tcp dport 7777 accept",
            },
          },
        },
        client: { virtualisation: { vlans: [1, 2] } },
      },
    },
    {
      logger: new Logger(path.join(resultDir, "log.txt"), () => undefined),
      resultDir,
      sourceDir: process.cwd(),
      accel: "auto",
      keepVmState: false,
    },
  );
  [client, server] = topo.machines as [Machine, Machine];
  await Promise.all([server.start(), client.start()]);
  await server.waitForUnit("multi-user.target");
});

afterAll(async () => {
  await topo?.close();
  fs.rmSync(resultDir, { recursive: true, force: true });
});

describe("system options on a real VM", () => {
  it("applies boot.kernel.sysctl and boot.kernelParams", async () => {
    expect(await server.succeed("cat /proc/sys/vm/swappiness")).toBe("7\n");
    expect(await server.succeed("cat /proc/cmdline")).toMatch(/ panic=1 .* vmrig\.test=42 quiet\n$/);
    expect(await client.succeed("cat /proc/cmdline")).not.toContain("vmrig.test");
  });

  it("applies systemd.tmpfiles.rules", async () => {
    expect(await server.succeed("stat -c '%a %U %G' /var/lib/from-tmpfiles")).toBe("750 www-data www-data\n");
  });

  it("mounts fileSystems", async () => {
    await server.waitForUnit("mnt-scratch\\x2d1.mount");
    expect(await server.succeed("findmnt -n -o FSTYPE /mnt/scratch-1")).toBe("tmpfs\n");
  });

  it("writes environment.etc with the owner a package created", async () => {
    expect(await server.succeed("stat -c '%a %U' /etc/motd.d/vmrig; cat /etc/motd.d/vmrig")).toBe(
      "640 www-data\nhello from vmrig\n",
    );
  });

  it("logs the autologin user in on tty1", async () => {
    await server.waitUntilSucceeds("pgrep -u alice -t tty1 bash", 120);
  });

  it("runs systemd.user.services in the user's own systemd once she logs in", async () => {
    await server.waitForFile("/tmp/user-unit-ran");
    expect(await server.succeed("cat /tmp/user-unit-ran")).toBe("hello from alice, /run/user/1000\n");
    await server.succeed(
      "runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user is-active hello.service",
    );
    await server.fail("systemctl is-active hello.service"); // not a system unit
  });

  it("opens port ranges, per-interface ports, trusted interfaces and extra rules, and nothing else", async () => {
    for (const port of [8001, 7001, 7777, 9999]) await server.succeed(`systemd-run --unit=l${port} nc -lk ${port}`);
    for (const port of [8001, 7001, 7777, 9999]) await server.waitForOpenPort(port);
    await client.succeed("nc -z -w 3 192.168.1.2 8001", "nc -z -w 3 192.168.1.2 7001", "nc -z -w 3 192.168.1.2 7777");
    await client.fail("nc -z -w 3 192.168.1.2 9999"); // eth1: not open
    await client.succeed("nc -z -w 3 192.168.2.2 9999"); // eth2 is trusted
  });
});
