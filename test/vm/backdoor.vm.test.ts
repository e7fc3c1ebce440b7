import { createHash } from "node:crypto";
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { QemuVm } from "../../src/vm/qemu.js";
import { bootVm } from "./helpers.js";

let vm: QemuVm;
let dir: string;

beforeAll(async () => {
  ({ vm, dir } = await bootVm("framing"));
});

afterAll(async () => {
  await vm?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

const run = (cmd: string, timeout?: number) => vm.backdoor.run(cmd, timeout);

describe("backdoor on a real VM", () => {
  it("returns exit codes, stdout and stderr separately", async () => {
    const r = await run("echo out; echo err >&2; exit 7");
    expect(r.status).toBe(7);
    expect(r.stdout.toString()).toBe("out\n");
    expect(r.stderr.toString()).toBe("err\n");
  });

  it("runs in bash as root in /root with set -euo pipefail", async () => {
    expect((await run("id -u; pwd; echo $BASH_VERSION | cut -c1")).stdout.toString()).toBe("0\n/root\n5\n");
    expect((await run("false; echo not reached")).status).toBe(1);
    expect((await run("false | true")).status).toBe(1);
    expect((await run('echo "$UNSET_VARIABLE"')).status).not.toBe(0);
  });

  it("runs commands with SIGINT and SIGQUIT at their defaults (so Ctrl-C and `kill -INT` work)", async () => {
    const mask = BigInt(`0x${(await run("sed -n 's/^SigIgn:\\t//p' /proc/self/status")).stdout.toString().trim()}`);
    expect(mask & 0b110n).toBe(0n); // bit 1 = SIGINT (2), bit 2 = SIGQUIT (3)
    const r = await run("sh -c 'kill -INT $$; sleep 5' || echo $?");
    expect(r.stdout.toString()).toBe("130\n");
  });

  it("passes every byte value through, with no trailing newline", async () => {
    const r = await run("printf \"$(printf '\\\\%03o' $(seq 0 255))\"");
    expect(r.status).toBe(0);
    expect([...r.stdout]).toEqual([...Array(256).keys()]);
  });

  it("carries 3 MB of output intact", async () => {
    const r = await run(
      "head -c 3000000 /dev/urandom > /tmp/big; sha256sum /tmp/big | cut -d' ' -f1 >&2; cat /tmp/big",
    );
    expect(r.stdout.length).toBe(3_000_000);
    expect(createHash("sha256").update(r.stdout).digest("hex")).toBe(r.stderr.toString().trim());
  });

  it("sends command text byte for byte (quotes, newlines, unicode)", async () => {
    const text = `a'b"c\\d $x\n\tünï`;
    const r = await run(`cat <<'EOF'\n${text}\nEOF`);
    expect(r.stdout.toString()).toBe(text + "\n");
  });

  it("keeps the shell's state out of reach of commands (exit, cd, reading stdin)", async () => {
    await run("cd /tmp; exit 0");
    await run("cat"); // stdin is /dev/null: must not eat the channel
    expect((await run("pwd")).stdout.toString()).toBe("/root\n");
  });

  it("kills a command whose time is up, with its children, and stays usable", async () => {
    const t0 = Date.now();
    await expect(run("sleep 300 & sleep 301; echo never", 2)).rejects.toMatchObject({ name: "CommandTimeout" });
    expect(Date.now() - t0).toBeLessThan(10_000);
    // Killed processes may linger as zombies until a booting systemd reaps them.
    const alive = await run("ps -eo stat=,comm= | awk '$2 == \"sleep\" && $1 !~ /Z/' | wc -l");
    expect(alive.stdout.toString()).toBe("0\n");
    expect((await run("echo alive")).stdout.toString()).toBe("alive\n");
  });

  it("answers a resynchronising ping", async () => {
    await expect(vm.backdoor.ping()).resolves.toBeUndefined();
  });

  it("keeps files written early in /tmp and /run while systemd boots", async () => {
    await run("echo early > /tmp/early; echo early > /run/early");
    await run("systemctl is-system-running --wait || true");
    expect((await run("cat /tmp/early /run/early")).stdout.toString()).toBe("early\nearly\n");
  });

  it("boots with the network and backdoor up before systemd finishes", () => {
    // Not a timing assertion: the boot time itself is measured in bench/.
    expect(vm.bootMs).toBeGreaterThan(0);
    expect(vm.console.all).not.toContain("Kernel panic");
  });
});
