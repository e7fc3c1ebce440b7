import { execFileSync } from "node:child_process";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { Backdoor, encodeCommand } from "../../src/vm/backdoor.js";

describe("command encoding", () => {
  it("is one line that bash's printf %b restores byte for byte", () => {
    const cmd = `echo "a'b" \\ $HOME\n\tünïcødé \x01 \x7f; exit 3`;
    const enc = encodeCommand(cmd);
    expect(enc).not.toContain("\n");
    const back = execFileSync("bash", ["-c", 'printf %b "$1"', "bash", enc]);
    expect(back.toString()).toBe(cmd);
  });
});

/** A fake guest: three in-memory sockets; the test plays the guest's side. */
function fakeGuest() {
  const cmd = new PassThrough();
  const err = new PassThrough();
  const ctl = new PassThrough();
  const sent: string[] = [];
  const ctlSent: string[] = [];
  const write = cmd.write.bind(cmd);
  // host -> guest writes are captured; guest -> host data is pushed with emit("data")
  (cmd as unknown as { write: (s: string) => boolean }).write = (s: string) => (sent.push(s), true);
  (ctl as unknown as { write: (s: string) => boolean }).write = (s: string) => (ctlSent.push(s), true);
  void write;
  const bd = new Backdoor({ requests: cmd, replies: cmd, stderr: err, control: ctl });
  const toHost = (s: PassThrough, data: Buffer | string, chunk = 3) => {
    const b = Buffer.from(data);
    for (let i = 0; i < b.length; i += chunk) s.emit("data", b.subarray(i, i + chunk));
  };
  return { bd, cmd, err, sent, ctlSent, toHost };
}

const idOf = (line: string) => line.split(" ")[0]!;

describe("backdoor framing", () => {
  it("separates stdout, stderr and status, even split into tiny chunks with binary bytes", async () => {
    const g = fakeGuest();
    g.toHost(g.cmd, "\x1eV:READY:boot1\x1e\n");
    const p = g.bd.run("whatever");
    await new Promise((r) => setImmediate(r));
    const id = idOf(g.sent[0]!);
    const payload = Buffer.concat([Buffer.from([0, 1, 2, 0x1e, 0xff, 10]), Buffer.from("no newline at end")]);
    g.toHost(
      g.cmd,
      Buffer.concat([Buffer.from(`\x1eV:${id}:O:42\x1e`), payload, Buffer.from(`\x1eV:${id}:E:3\x1e\n`)]),
    );
    g.toHost(g.err, `warning!\x1eV:${id}:E\x1e`);
    const r = await p;
    expect(r.status).toBe(3);
    expect(r.stdout.equals(payload)).toBe(true);
    expect(r.stderr.toString()).toBe("warning!");
    expect(g.bd.bootId).toBe("boot1");
  });

  it("hands a command's output on while it runs, every byte once, never its end marker", async () => {
    const g = fakeGuest();
    const seen = { stdout: "", stderr: "" };
    const p = g.bd.run("long", undefined, (stream, chunk) => (seen[stream] += chunk.toString()));
    await new Promise((r) => setImmediate(r));
    const id = idOf(g.sent[0]!);
    const line = "x".repeat(100) + "\n";
    g.toHost(g.cmd, `\x1eV:${id}:O:9\x1e${line}${line}`, 7);
    g.toHost(g.err, `oops ${line}`, 5);
    // before the command ends: all but the last few bytes (which could be its end marker's start)
    expect(seen.stdout.length).toBeGreaterThan(150);
    expect(line.repeat(2).startsWith(seen.stdout)).toBe(true);
    expect(seen.stderr.length).toBeGreaterThan(50);
    g.toHost(g.cmd, `tail\x1eV:${id}:E:0\x1e\n`, 3);
    g.toHost(g.err, `\x1eV:${id}:E\x1e`, 3);
    const r = await p;
    expect(seen.stdout).toBe(r.stdout.toString());
    expect(seen.stdout).toBe(`${line}${line}tail`);
    expect(seen.stderr).toBe(`oops ${line}`);
  });

  it("runs commands one at a time, in order", async () => {
    const g = fakeGuest();
    const a = g.bd.run("a");
    const b = g.bd.run("b");
    await new Promise((r) => setImmediate(r));
    expect(g.sent).toHaveLength(1);
    const idA = idOf(g.sent[0]!);
    g.toHost(g.cmd, `\x1eV:${idA}:O:1\x1eA\x1eV:${idA}:E:0\x1e\n`, 1000);
    g.toHost(g.err, `\x1eV:${idA}:E\x1e`, 1000);
    expect((await a).stdout.toString()).toBe("A");
    await new Promise((r) => setImmediate(r));
    const idB = idOf(g.sent[1]!);
    g.toHost(g.cmd, `\x1eV:${idB}:O:2\x1eB\x1eV:${idB}:E:1\x1e\n`, 1000);
    g.toHost(g.err, `\x1eV:${idB}:E\x1e`, 1000);
    expect((await b).status).toBe(1);
  });

  it("on timeout asks the guest to kill the command's process group", async () => {
    const g = fakeGuest();
    const p = g.bd.run("sleep 100", 0.05);
    await new Promise((r) => setImmediate(r));
    const id = idOf(g.sent[0]!);
    g.toHost(g.cmd, `\x1eV:${id}:O:77\x1e`, 1000);
    await new Promise((r) => setTimeout(r, 100));
    expect(g.ctlSent).toEqual(["kill 77\n"]);
    g.toHost(g.cmd, `partial\x1eV:${id}:E:137\x1e\n`, 1000);
    g.toHost(g.err, `\x1eV:${id}:E\x1e`, 1000);
    await expect(p).rejects.toMatchObject({ name: "CommandTimeout", seconds: 0.05 });
  });

  it("fails a waiting command when the guest shell restarts", async () => {
    const g = fakeGuest();
    const p = g.bd.run("reboot");
    await new Promise((r) => setImmediate(r));
    g.toHost(g.cmd, "\x1eV:READY:boot2\x1e\n", 1000);
    await expect(p).rejects.toMatchObject({ name: "BackdoorClosed" });
  });
});

describe("ping", () => {
  it("ends at once when the backdoor closes while it waits, and on a closed backdoor", async () => {
    const g = fakeGuest();
    const t0 = Date.now();
    const waiting = g.bd.ping(60_000);
    await new Promise((r) => setImmediate(r));
    expect(g.sent[0]).toMatch(/^ping [0-9a-f]+\n$/);
    g.bd.close("QEMU exited");
    await expect(waiting).rejects.toThrow(/QEMU exited/);
    await expect(g.bd.ping(60_000)).rejects.toThrow(/QEMU exited/);
    expect(Date.now() - t0).toBeLessThan(5_000); // not the ping's own 60 s timeout
  });
});
