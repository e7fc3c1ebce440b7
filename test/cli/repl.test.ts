import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cacheRoot } from "../../src/image/store.js";
import { cli, runCli } from "./helpers.js";

// `vmrig repl` driven through a real pseudo-terminal (tmux), as a person would use it.
const tmux = (...args: string[]) => execFileSync("tmux", args, { encoding: "utf8" });

/** A tmux session of 160×50: `open` starts it in `dir` (running `command`, or a shell), then keys go in and the screen is read. */
function terminal(name: string) {
  const session = `${name}-${process.pid}`;
  const screen = () => tmux("capture-pane", "-p", "-J", "-t", session, "-S", "-400");
  const keys = (...k: string[]) => tmux("send-keys", "-t", session, ...k);
  return {
    session,
    screen,
    keys,
    open: (dir: string, command?: string) =>
      tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", "-c", dir, ...(command ? [command] : [])),
    type: (line: string) => {
      keys("-l", line);
      keys("Enter");
    },
    waitFor: async (pattern: RegExp, seconds = 300): Promise<string> => {
      const deadline = Date.now() + seconds * 1000;
      for (;;) {
        const s = screen();
        if (pattern.test(s)) return s;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} on the terminal; it shows:\n${s}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    },
    close: () => spawnSync("tmux", ["kill-session", "-t", session]),
  };
}

const term = terminal("vmrig-repl");
const { screen, keys, type, waitFor } = term;
afterAll(term.close);

describe("vmrig repl (through tmux)", () => {
  it("starts a machine, runs commands in shell() with line editing and Ctrl-C, comes back, runs testScript()", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-repl-"));
    fs.writeFileSync(
      path.join(dir, "interactive.vmrig.ts"),
      `import { defineTest } from "vmrig";
export default defineTest({
  name: "interactive",
  nodes: { machine: {} },
  async testScript({ machine }) {
    await machine.succeed("test -e /root/made-in-the-shell");
    machine.log("the script saw the shell's file");
  },
});
`,
    );
    term.open(dir, `node ${cli} repl interactive.vmrig.ts --output-dir out; echo REPL-EXITED-$?; sleep 600`);
    await waitFor(/^vmrig> $/m, 600);

    type("await machine.start(); 'started-' + 6 * 7");
    const booted = await waitFor(/'started-42'/, 300);
    // virtualisation.graphics (default true): in interactive mode the display is served over VNC
    const vnc = /display: VNC on unix socket (\S+);/.exec(booted)?.[1];
    expect(vnc && fs.statSync(vnc).isSocket()).toBe(true);
    // and the one line to watch it: a VNC viewer on the TCP port it names gets QEMU's RFB greeting
    const port = Number(/watch it: vncviewer 127\.0\.0\.1::(\d+)/.exec(booted)?.[1]);
    const greeting = await new Promise<string>((resolve, reject) => {
      const c = net.connect(port, "127.0.0.1");
      c.once("data", (d: Buffer) => {
        resolve(d.toString());
        c.destroy();
      });
      c.once("error", reject);
    });
    expect(greeting).toMatch(/^RFB 003\.00\d\n/);
    const panePid = tmux("display-message", "-p", "-t", term.session, "#{pane_pid}").trim();
    const children = (pid: string, name: string) =>
      spawnSync("pgrep", ["-P", pid, "-x", name], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    const qemu = children(children(panePid, "node")[0] ?? "0", "qemu-system-x86");
    expect(qemu).toHaveLength(1);

    type("await machine.shell()");
    await waitFor(/root shell on machine/);
    await waitFor(/root@machine:~# $/m);
    type("echo guest-$((6*7)) $(hostname) $(tty)");
    await waitFor(/^guest-42 machine \/dev\/pts\/\d+$/m);
    // line editing happens in the guest's readline: Ctrl-U discards what was typed
    keys("-l", "echo wrong");
    keys("C-u");
    type("echo right-$((2*2))");
    await waitFor(/^right-4$/m);
    // Ctrl-C interrupts the guest's foreground command, not vmrig
    type("sleep 1000");
    await new Promise((r) => setTimeout(r, 1500));
    keys("C-c");
    type("echo after-$((1+1)); touch /root/made-in-the-shell");
    await waitFor(/^after-2$/m, 60);
    type("exit");
    await waitFor(/left the shell on machine\]\s*\n(.*\n)*vmrig> $/m, 60);

    type("await testScript()");
    await waitFor(/\(finished: running interactive's test script/, 300);
    expect(screen()).toContain("the script saw the shell's file");

    keys("C-d");
    await waitFor(/REPL-EXITED-0/, 120);
    for (const pid of qemu) expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    expect(fs.readFileSync(path.join(dir, "out/interactive/log.txt"), "utf8")).toContain("starting vm");
  });
});

describe("vmrig repl on a Python test (through tmux)", () => {
  const py = terminal("vmrig-pyrepl");
  afterAll(py.close);

  it("opens a Python prompt with the machines: calls, a failed call's report, Ctrl-C, test_script(), Ctrl-D", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-pyrepl-"));
    fs.writeFileSync(
      path.join(dir, "py.vmrig.ts"),
      `import { defineTest } from "vmrig";
export default defineTest({
  name: "py",
  nodes: { machine: {} },
  testScript: \`
machine.succeed("test -e /root/made-at-the-prompt")
machine.log("the script saw the prompt's file")
\`,
});
`,
    );
    // typed at a shell's prompt, as a person starts it
    py.open(dir);
    py.type(`node ${cli} repl py.vmrig.ts --output-dir out; echo REPL-EXITED-$?`);
    const until = py.waitFor;
    const line = py.type;
    await until(/vmrig interactive \(Python\): py/, 600);
    await until(/^>>> $/m);
    line('print("answer-" + machine.succeed("echo $((6*7))").strip())');
    await until(/^answer-42$/m, 300);
    // a failed call is a Python exception carrying vmrig's report, and the prompt goes on
    line('machine.succeed("exit 3")');
    await until(/MachineError: .*succeed\("exit 3"\)/s, 120);
    await until(/^>>> $/m, 60); // (the report printed in full: the prompt is back)
    // Ctrl-C is Python's: a KeyboardInterrupt at the prompt, vmrig and the machine stay
    py.keys("C-c");
    await until(/KeyboardInterrupt/, 30);
    line('machine.succeed("touch /root/made-at-the-prompt"); print("still-" + "up")');
    await until(/^still-up$/m, 120);
    // NixOS's shell_interact: the guest's root shell on this terminal, until `exit`
    line("machine.shell_interact()");
    await until(/root@machine:~# $/m, 120);
    line("echo py-shell-$((3*3))");
    await until(/^py-shell-9$/m, 60);
    line("exit");
    await until(/left the shell on machine\]/, 60);
    line('print("back-" + "at-python")');
    await until(/^back-at-python$/m, 60);
    line("test_script()");
    await until(/the script saw the prompt's file/, 120);
    py.keys("C-d");
    await until(/REPL-EXITED-0/, 120);
  });
});

describe("vmrig run --debug (through tmux)", () => {
  const debug = terminal("vmrig-debug");
  afterAll(debug.close);

  it("on a failure keeps the machines up and opens a REPL there; leaving it ends the run as failed", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-debug-"));
    fs.writeFileSync(
      path.join(dir, "fails.vmrig.ts"),
      `import { defineTest } from "vmrig";
export default defineTest({
  name: "fails",
  nodes: { machine: {} },
  async testScript({ machine }) {
    await machine.succeed("echo left-by-the-script > /root/state");
    await machine.succeed("false");
  },
});
`,
    );
    debug.open(dir, `node ${cli} run fails.vmrig.ts --debug --output-dir out; echo RUN-EXITED-$?; sleep 600`);
    const show = debug.screen;
    const wait = debug.waitFor;
    const say = debug.type;
    await wait(/vmrig --debug: fails failed; its machines are still up(.*\n)*vmrig> $/m, 600);
    say("(await machine.succeed('cat /root/state')).trim() + ' ' + error.message.includes('false')");
    await wait(/'left-by-the-script true'/, 120);
    debug.keys("C-d");
    await wait(/RUN-EXITED-1/, 120);
    expect(show()).toContain("0 passed, 1 failed");
  });
});

describe("--keep-vm-state", () => {
  const name = `keep-state-${process.pid}`;
  afterAll(() => fs.rmSync(path.join(cacheRoot(), "vm-state", name), { recursive: true, force: true }));

  it("keeps a machine's disk between runs", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-keep-"));
    const file = path.join(dir, "keep.vmrig.ts");
    fs.writeFileSync(
      file,
      `import { defineTest } from "vmrig";
export default defineTest({
  name: ${JSON.stringify(name)},
  nodes: { machine: {} },
  async testScript({ machine }) {
    const kept = (await machine.execute("cat /root/kept")).stdout.trim();
    machine.log("kept: [" + kept + "]");
    await machine.succeed("echo run-$RANDOM > /root/kept && sync");
  },
});
`,
    );
    const run = () => runCli(["run", file, "--keep-vm-state", "--output-dir", path.join(dir, "out")], dir);
    const first = run();
    expect(first.status, first.stdout + first.stderr).toBe(0);
    expect(first.stderr).toContain("kept: []");
    const second = run();
    expect(second.status, second.stdout + second.stderr).toBe(0);
    expect(second.stderr).toMatch(/kept: \[run-\d+\]/);
  });
});
