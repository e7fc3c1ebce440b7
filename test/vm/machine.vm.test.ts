import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Logger } from "../../src/session/logger.js";
import { createTopology, type Topology } from "../../src/session/topology.js";
import type { Machine } from "../../src/machine/machine.js";
import { VmrigError } from "../../src/util/errors.js";

let topo: Topology;
let a: Machine;
let b: Machine;
let resultDir: string;
const lines: string[] = [];

beforeAll(async () => {
  resultDir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-api-"));
  const logger = new Logger(path.join(resultDir, "log.txt"), (l) => lines.push(l));
  topo = await createTopology(
    { name: "api", nodes: { a: {}, b: { networking: { firewall: { allowedTCPPorts: [1234] } } } } },
    { logger, resultDir, sourceDir: process.cwd(), accel: "auto", keepVmState: false, enableOCR: true },
  );
  [a, b] = topo.machines as [Machine, Machine];
  await Promise.all([a.start(), b.start()]);
});

afterAll(async () => {
  await topo?.close();
  fs.rmSync(resultDir, { recursive: true, force: true });
});

/** Expect a VmrigError whose report contains every fragment. */
async function rejectsWith(p: Promise<unknown>, ...fragments: string[]): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(VmrigError);
  for (const f of fragments) expect((e as Error).message).toContain(f);
}

describe("commands", () => {
  it("execute returns status and stdout; succeed and fail check the status", async () => {
    expect(await a.execute("echo hi; exit 4")).toEqual({ status: 4, stdout: "hi\n" });
    expect(await a.succeed("echo one", "echo two")).toBe("one\ntwo\n");
    expect(await a.fail("exit 1")).toBe("");
    await rejectsWith(a.fail("true"), 'a.fail("true"): command succeeded but was expected to fail');
    await rejectsWith(
      a.succeed("echo oops; echo why >&2; false"),
      "exit status 1",
      "oops",
      "--- stderr ---\n    why",
      "machine.vm.test.ts",
    );
  });

  it("times out execute, waitUntilSucceeds and waitUntilFails when told to", async () => {
    const t0 = Date.now();
    await rejectsWith(a.execute("sleep 100", { timeout: 2 }), "timed out after 2 s");
    await rejectsWith(a.waitUntilSucceeds("false", 3), "timed out after 3 s");
    await rejectsWith(a.waitUntilFails("true", 2), "timed out after 2 s");
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(await a.waitUntilSucceeds("test -e /tmp/later || (touch /tmp/later; false)", 30)).toBe("");
  });

  it("waits for files and sleeps in guest time", async () => {
    await a.succeed("(sleep 2; touch /tmp/appears) >/dev/null 2>&1 &");
    await a.waitForFile("/tmp/appears", 30);
    const before = Number((await a.succeed("cut -d' ' -f1 /proc/uptime")).trim());
    await a.sleep(1);
    const after = Number((await a.succeed("cut -d' ' -f1 /proc/uptime")).trim());
    expect(after - before).toBeGreaterThanOrEqual(1);
    await rejectsWith(a.waitForFile("/nonexistent", 2), "timed out after 2 s", "/nonexistent");
  });
});

describe("systemd", () => {
  it("waits for units, and fails at once on a failed or unknown unit", async () => {
    await a.waitForUnit("multi-user.target");
    await a.succeed("systemd-run --unit=boom --property=Type=oneshot false || true");
    const t0 = Date.now();
    await rejectsWith(a.waitForUnit("boom.service", { timeout: 300 }), "unit boom.service failed");
    await rejectsWith(a.waitForUnit("no-such-unit.service", { timeout: 300 }), "does not exist");
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it("passes unit names to the guest's shell quoted: `$`, backticks and quotes stay characters", async () => {
    const name = `x$(touch /tmp/pwned)\`touch /tmp/pwned\`'"y.service`;
    await rejectsWith(a.waitForUnit(name, { timeout: 30 }), name);
    await rejectsWith(a.getUnitProperty(name, "NoSuchProperty"), "has no property NoSuchProperty");
    await a.fail("test -e /tmp/pwned");
  });

  it("starts and stops jobs and reads unit properties", async () => {
    await a.succeed("systemd-run --unit=listener --property=Type=exec nc -lk 1234");
    await a.waitForUnit("listener.service");
    await a.requireUnitState("listener.service", "active");
    expect(await a.getUnitProperty("listener.service", "SubState")).toBe("running");
    await a.waitForOpenPort(1234);
    await a.stopJob("listener.service");
    await a.waitForClosedPort(1234, "localhost", 30);
    await rejectsWith(a.requireUnitState("listener.service", "active"), "is inactive, expected active");
    expect((await a.systemctl("is-active listener.service")).status).not.toBe(0);
  });

  it("waits for a unix socket", async () => {
    await a.succeed("systemd-run --unit=usock nc -lkU /run/test.sock");
    await a.waitForOpenUnixSocket("/run/test.sock", 60);
  });
});

describe("files", () => {
  it("copies files and directories both ways, binary-safe", async () => {
    const src = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-copy-"));
    const data = randomBytes(5_000_000);
    fs.mkdirSync(path.join(src, "tree/sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "tree/sub/blob.bin"), data);
    fs.writeFileSync(path.join(src, "tree/hello.txt"), "hello\n");
    await a.copyFromHost(path.join(src, "tree"), "/srv/copied");
    expect(await a.succeed("sha256sum /srv/copied/sub/blob.bin | cut -d' ' -f1")).toBe(
      createHash("sha256").update(data).digest("hex") + "\n",
    );
    expect(await a.succeed("cat /srv/copied/hello.txt")).toBe("hello\n");
    await a.copyFromHost(path.join(src, "tree/hello.txt"), "/etc/renamed.txt");
    expect(await a.succeed("cat /etc/renamed.txt")).toBe("hello\n");

    const back = await a.copyFromMachine("/srv/copied", path.join(src, "back"));
    expect(back).toBe(path.join(src, "back", "copied"));
    expect(fs.readFileSync(path.join(back, "sub/blob.bin")).equals(data)).toBe(true);
    const single = await a.copyFromMachine("/etc/hostname");
    expect(single).toBe(path.join(resultDir, "hostname"));
    expect(fs.readFileSync(single, "utf8")).toBe("a\n");
    fs.rmSync(src, { recursive: true, force: true });
  });
});

describe("networks", () => {
  it("resolves every node by name on vlan 1 with the SPEC's addresses", async () => {
    expect(await a.succeed("ip -4 -o addr show eth1 | awk '{print $4}'")).toBe("192.168.1.1/24\n");
    expect(await b.succeed("ip -6 -o addr show eth1 scope global | awk '{print $4}'")).toBe("2001:db8:1::2/64\n");
    await a.succeed("ping -c 1 -W 5 b", "ping -c 1 -W 5 2001:db8:1::2");
    expect(await b.succeed("getent ahostsv4 a | awk '{print $1}' | head -1")).toBe("192.168.1.1\n");
    expect(await b.succeed("getent ahostsv6 a | awk '{print $1}' | head -1")).toBe("2001:db8:1::1\n");
  });

  it("applies the firewall: an allowed port is reachable, others are not", async () => {
    await b.succeed("systemd-run --unit=open nc -lk 1234", "systemd-run --unit=closed nc -lk 4321");
    await b.waitForOpenPort(1234);
    await a.waitUntilSucceeds("nc -z -w 2 b 1234", 30);
    await a.fail("nc -z -w 2 b 4321");
  });

  it("takes a machine off the network with block() and back with unblock()", async () => {
    await b.block();
    await a.fail("ping -c 1 -W 2 b");
    await b.unblock();
    await a.waitUntilSucceeds("ping -c 1 -W 2 b", 30);
  });

  it("gives guests no route to the host or the internet", async () => {
    expect(await a.succeed("ip route show default | wc -l")).toBe("0\n");
    await a.fail("ping -c 1 -W 2 10.0.2.2");
    expect((await a.execute("ip route get 1.1.1.1 2>&1")).stdout).toContain("unreachable");
    await a.fail("curl -s --max-time 3 http://10.0.2.2/");
  });

  it("forwards a host port to a guest port when asked", async () => {
    await a.succeed(
      "mkdir -p /srv/www && echo forwarded > /srv/www/index.html",
      "systemd-run --unit=web busybox httpd -f -p 8080 -h /srv/www",
    );
    await a.waitForOpenPort(8080);
    const port = 20000 + Math.floor(Math.random() * 20000);
    await a.forwardPort(port, 8080);
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get(`http://127.0.0.1:${port}/`, (res) => {
          let s = "";
          res.on("data", (d: Buffer) => (s += d.toString()));
          res.on("end", () => resolve(s));
        })
        .on("error", reject);
    });
    expect(body).toBe("forwarded\n");
    // The forwarding NIC still gives the guest no way out.
    await a.fail("curl -s --max-time 3 http://10.0.2.2/");
  });
});

describe("console, keyboard, screen, QEMU", () => {
  it("types on a virtual terminal and reads it back", async () => {
    await a.waitForUnit("getty@tty1.service");
    await a.waitUntilTtyMatches(1, "login:", 60);
    await a.sendChars("root\n");
    await a.waitUntilTtyMatches(1, /a:~# /, 60); // Debian's root prompt
    await a.sendChars("touch /tmp/typed-on-tty1\n");
    await a.waitForFile("/tmp/typed-on-tty1", 30);
    expect(await a.getTtyText(1)).toContain("touch /tmp/typed-on-tty1");
    await a.sendKey("ctrl-d");
  });

  it("reads the serial console and writes to it", async () => {
    expect(await a.waitForConsoleText(/vmrig: configuring the network/, 10)).toContain("vmrig");
    expect(a.getConsoleLog()).toContain("vmrig-initrd: mounting /dev/vda");
    await a.waitForConsoleText("login:", 120);
    await a.sendConsole("root\n");
    await a.waitUntilSucceeds("pgrep -t ttyS0 -x bash", 60);
  });

  it("takes a PNG screenshot into the result folder", async () => {
    const file = await a.screenshot("screen");
    expect(file).toBe(path.join(resultDir, "screen.png"));
    expect(fs.readFileSync(file).subarray(1, 4).toString()).toBe("PNG");
  });

  it("reads the screen by OCR: getScreenText, its variants, waitForText", async () => {
    // tty8 has no getty (logind starts them on tty1-6), so nothing redraws it under us
    await a.succeed(
      "chvt 8",
      "printf '\\033[2J\\033[HVMRIG OCR CHECK 4711\\n\\nThe quick brown fox jumps over the lazy dog.\\n' > /dev/tty8",
    );
    await a.waitForText(/OCR CHECK 4711/, 60);
    expect(await a.getScreenText()).toMatch(/quick brown fox jumps over the lazy dog/);
    const variants = await a.getScreenTextVariants();
    expect(variants).toHaveLength(3);
    for (const v of variants) expect(v).toMatch(/4711/);
    await rejectsWith(
      a.waitForText(/not on the screen/, 2),
      "a.waitForText(/not on the screen/): timed out after 2 s",
      "OCR of the screen read:",
      "CHECK 4711",
    );
    await a.succeed("chvt 1");
  });

  it("talks QMP and the human monitor, and waits for QMP events", async () => {
    expect(await a.qmp("query-status")).toMatchObject({ status: "running" });
    expect(await a.sendMonitorCommand("info name")).toContain("a");
    await a.qmp("stop");
    const ev = await a.waitForQmpEvent((e) => e.event === "STOP", 10);
    expect(ev.event).toBe("STOP");
    await a.qmp("cont");
  });

  it("logs nested steps to the run log", async () => {
    await a.nested("an outer step", () => Promise.resolve(a.log("inside it")));
    expect(lines).toContain("  a: inside it");
    // the log file is a write stream: its bytes land a moment later
    await vi.waitFor(
      () => expect(fs.readFileSync(path.join(resultDir, "log.txt"), "utf8")).toContain("a: an outer step"),
      { timeout: 5000 },
    );
  });
});

describe("every wait gives up at its timeout", () => {
  it("waitForUnit, ports, sockets, console, QMP events, ttys and shutdown", async () => {
    const t0 = Date.now();
    await a.succeed("systemd-run --no-block --unit=forever --property=Type=oneshot sleep 600");
    await a.waitUntilSucceeds("systemctl show -p ActiveState --value forever.service | grep -qx activating", 30);
    await rejectsWith(a.waitForUnit("forever.service", { timeout: 3 }), "timed out after 3 s", "forever.service");
    await rejectsWith(a.waitForOpenPort(9, "localhost", 2), "timed out after 2 s");
    await a.succeed("systemd-run --unit=stays-open nc -lk 4444");
    await a.waitForOpenPort(4444);
    await rejectsWith(a.waitForClosedPort(4444, "localhost", 2), "timed out after 2 s");
    await rejectsWith(a.waitForOpenUnixSocket("/run/never.sock", 2), "timed out after 2 s");
    await rejectsWith(a.waitForConsoleText("this text never appears", 2), "timed out after 2 s");
    await rejectsWith(
      a.waitForQmpEvent((e) => e.event === "NEVER", 2),
      "timed out after 2 s",
    );
    await rejectsWith(a.waitUntilTtyMatches(2, "never on tty2", 2), "timed out after 2 s");
    await rejectsWith(a.waitForShutdown(2), "still running after 2 s");
    expect(Date.now() - t0).toBeLessThan(90_000);
  });
});

describe("power", () => {
  it("is ready for systemctl as soon as start() resolves", async () => {
    await b.crash();
    await b.start();
    await b.succeed("systemctl show -p Version --value");
  });

  it("reboots and comes back with a new boot, keeping the disk", async () => {
    await b.succeed("echo persisted > /root/mark; sync");
    const boot1 = await b.succeed("cat /proc/sys/kernel/random/boot_id");
    await b.reboot();
    expect(await b.succeed("cat /proc/sys/kernel/random/boot_id")).not.toBe(boot1);
    expect(await b.succeed("cat /root/mark")).toBe("persisted\n");
  });

  it("crashes, reports down, boots again on use, shuts down cleanly", async () => {
    await b.crash();
    expect(await b.isUp()).toBe(false);
    expect(await b.succeed("echo back")).toBe("back\n");
    expect(await b.isUp()).toBe(true);
    await b.shutdown();
    expect(await b.isUp()).toBe(false);
    await b.start();
    await b.succeed("systemctl poweroff --no-block");
    await b.waitForShutdown(120);
    expect(await b.isUp()).toBe(false);
  });
});
