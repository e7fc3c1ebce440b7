import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { root, runCli } from "./helpers.js";

/**
 * Runs an example. Its script gets 20 min, below the 30 min this harness allows the whole run
 * (image builds included): a script that hangs fails with vmrig's own report, screenshots and
 * logs, rather than being killed with nothing kept.
 */
function run(file: string, extra: string[] = []) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-out-"));
  const args = ["run", file, "--rerun", "--global-timeout", "1200", "--output-dir", out, ...extra];
  return { ...runCli(args, path.dirname(file), 1_800_000), out };
}

describe("examples from the seeds and SPEC §5 (real VMs)", () => {
  for (const name of [
    "ping",
    "nat",
    "link-failure",
    "mysql-replication",
    "goldenbook",
    "postgres-rest",
    "console-login",
    "client-server-containers",
    "client-server-mixed",
    "etcd-partition",
    "bittorrent",
    "specialisation",
    // nixpkgs tests with their Python scripts verbatim (SPEC §11)
    "nixos/lighttpd",
    "nixos/rsyncd",
    "nixos/memcached",
    "nixos/nfs",
    "nixos/redis",
    "nixos/keepalived",
    "nixos/nat",
    // graphical machines (SPEC §8); x11-terminal below, with a video
    "nixos/sgtpuzzles",
    "firefox",
    "nixos/chromium",
    "nixos/teeworlds",
    "nixos/openarena",
    "gnome-wayland",
  ]) {
    it(`examples/${name}.vmrig.ts passes`, () => {
      const r = run(path.join(root, "examples", `${name}.vmrig.ts`));
      expect(r.output).toContain("1 passed, 0 failed");
      expect(r.status).toBe(0);
    });
  }
});

describe("script globals (real VMs)", () => {
  it("startAll, subtest, retry, pollingCondition, serialStdout, vlans, nodes, driver, joinAll", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-globals-"));
    const file = path.join(dir, "globals.vmrig.ts");
    fs.writeFileSync(
      file,
      `import { defineTest } from "vmrig";
export default defineTest({
  name: "globals",
  nodes: { a: { virtualisation: { vlans: [1, 2] } }, b: { virtualisation: { vlans: [2] } } },
  async testScript({ a, b, startAll, subtest, retry, pollingCondition, serialStdoutOff, serialStdoutOn, vlans, nodes, driver, machines, joinAll, log }) {
    const t0 = Date.now();
    await startAll();
    log("both booted after " + (Date.now() - t0) + " ms");
    if (machines.map((m) => m.name).join() !== "a,b") throw new Error("machines: " + machines.map((m) => m.name).join());
    if (JSON.stringify(vlans) !== JSON.stringify([{ vlan: 1, members: ["a"] }, { vlan: 2, members: ["a", "b"] }])) throw new Error("vlans: " + JSON.stringify(vlans));
    if (nodes.b.config.networking.interfaces.eth1!.ipv4.addresses[0]!.address !== "192.168.2.2") throw new Error("nodes");
    if (driver.testName !== "globals" || !driver.resultDir.endsWith("globals")) throw new Error("driver: " + JSON.stringify(driver));
    await subtest("vlan 2 connects a and b", async () => {
      await a.succeed("ping -c 1 -W 5 192.168.2.2");
    });
    let tries = 0;
    await retry(async () => ++tries >= 3, 30);
    if (tries !== 3) throw new Error("retry ran " + tries + " times");
    serialStdoutOff();
    serialStdoutOn();
    const alive = pollingCondition(async () => (await b.execute("test -e /tmp/stop")).status !== 0, { description: "b has no /tmp/stop" });
    await alive.during(async () => {
      await a.succeed("true");
    });
    let failedAsExpected = false;
    try {
      await alive.during(async () => {
        await b.succeed("touch /tmp/stop");
        await a.succeed("true");
      });
    } catch (e) {
      failedAsExpected = String(e).includes("polling condition failed: b has no /tmp/stop");
    }
    if (!failedAsExpected) throw new Error("pollingCondition did not fail");
    await a.succeed("systemctl poweroff --no-block");
    await b.succeed("systemctl poweroff --no-block");
    await joinAll();
  },
});
`,
    );
    const r = run(file, ["--reporter", "list,junit"]);
    expect(r.output).toContain("1 passed, 0 failed");
    expect(r.output).toMatch(/both booted after \d+ ms/);
    const junit = fs.readFileSync(path.join(r.out, "junit.xml"), "utf8");
    expect(junit).toMatch(
      /<testcase classname="globals" name="vlan 2 connects a and b" time="\d+\.\d{3}"><\/testcase>/,
    );
    expect(junit).toContain('<testsuite name="globals" tests="2" failures="0"');
    expect(r.status).toBe(0);
    const result = JSON.parse(fs.readFileSync(path.join(r.out, "globals", "result.json"), "utf8")) as {
      subtests: { name: string; outcome: string }[];
    };
    expect(result.subtests).toEqual([expect.objectContaining({ name: "vlan 2 connects a and b", outcome: "passed" })]);
  });
});

describe("vmrig run --video (SPEC §8)", () => {
  it("records the x11-terminal example's screen into a video that ffprobe reads, and the HTML report shows it", () => {
    const r = run(path.join(root, "examples/x11-terminal.vmrig.ts"), ["--video", "--reporter", "html"]);
    expect(r.output).toContain("1 passed, 0 failed");
    expect(r.status).toBe(0);
    const file = path.join(r.out, "x11-terminal/video-machine.webm");
    const probe = JSON.parse(
      execFileSync(
        "ffprobe",
        [
          "-v",
          "error",
          "-count_frames",
          "-show_entries",
          "format=duration:stream=nb_read_frames,width,height,codec_name",
          "-of",
          "json",
          file,
        ],
        { encoding: "utf8" },
      ),
    ) as {
      format: { duration: string };
      streams: { codec_name: string; width: number; height: number; nb_read_frames: string }[];
    };
    const [stream] = probe.streams;
    expect(stream).toMatchObject({ codec_name: "vp8", width: 1024, height: 768 });
    // the whole script, ~6-25 s under TCG (its desktop is restored drawn), at the capture
    // rate of 2 frames a second
    const seconds = Number(probe.format.duration);
    expect(seconds).toBeGreaterThan(3);
    expect(Number(stream!.nb_read_frames)).toBeGreaterThan(seconds * 1.5);
    const result = JSON.parse(fs.readFileSync(path.join(r.out, "x11-terminal/result.json"), "utf8")) as {
      videos: { machine: string; file: string; frames: number }[];
      calls: { label: string }[];
    };
    expect(result.videos).toEqual([expect.objectContaining({ machine: "machine", file: "video-machine.webm" })]);
    // more than one screen: the desktop, the xterm, the typing
    expect(result.videos[0]!.frames).toBeGreaterThan(3);
    expect(result.calls.map((c) => c.label)).toContain("waiting for the X11 server");
    const html = fs.readFileSync(path.join(r.out, "index.html"), "utf8");
    expect(html).toContain('<video controls preload="metadata" src="x11-terminal/video-machine.webm"');
    expect(html).toMatch(/<ol class="calls">.*waiting for the X11 server/s);
  });
});
