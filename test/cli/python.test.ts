import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, writeTests } from "./helpers.js";

// NixOS test scripts in Python (SPEC §11), through the CLI on real containers: the script
// is the Python text of a NixOS test, run unchanged against vmrig's machines.

function runPython(name: string, script: string, machines = `containers: { server: {}, client: {} }`) {
  const body = `{\n  name: "${name}",\n  ${machines},\n  testScript: \`\n${script}\n  \`,\n}`;
  const dir = writeTests({ [name]: body });
  const file = path.join(dir, `${name}.vmrig.ts`);
  const r = runCli(["run", file, "--rerun", "--output-dir", path.join(dir, "results")], dir);
  /** the test file's line that holds `text` (1-based) */
  const lineOf = (text: string) => body.split("\n").findIndex((l) => l.includes(text)) + 2;
  /** `vmrig check` on the same file */
  const check = () => runCli(["check", file], dir);
  return { ...r, lineOf, check };
}

describe("Python test scripts (real containers)", () => {
  it("runs a NixOS script unchanged: subtests, execute, t, polling_condition, machines, JSON", () => {
    const r = runPython(
      "py-works",
      `    import json
    start_all()
    server.wait_for_unit("multi-user.target")

    @polling_condition(seconds_interval=0)
    def server_up():
        "the server answers"
        server.succeed("true")

    with subtest("client reaches server"):
        with server_up:
            client.succeed("ping -c 1 -W 5 server")

    with subtest("execute gives status and output"):
        status, out = client.execute("echo hello; exit 4")
        t.assertEqual(status, 4)
        t.assertEqual(out.strip(), "hello")

    addrs = json.loads(server.succeed("ip -j addr show eth1"))
    assert addrs[0]["addr_info"][0]["local"] == "192.168.1.2", addrs
    t.assertEqual(sorted(m.name for m in machines), ["client", "server"])
    t.assertEqual([v.nr for v in vlans], [1])
    retry(lambda last: True)
    print("script done")`,
    );
    expect(r.output).toContain("subtest: client reaches server");
    expect(r.output).toContain("script done");
    expect(r.output).toContain("1 passed, 0 failed");
    expect(r.status).toBe(0);
  });

  it("runs a script whose node names have '_' (NixOS's timezone.nix: node_eutz) and waits for NixOS's unit names", () => {
    const r = runPython(
      "py-names",
      `    start_all()
    node_eutz.wait_for_unit("multi-user.target")
    node_eutz.wait_for_unit("firewall.service")
    peer.wait_for_unit("firewall")
    peer.succeed("ping -c 1 -W 5 node_eutz")
    print("hostname:", node_eutz.succeed("hostname").strip())`,
      "nodes: { node_eutz: {} },\n  containers: { peer: {} }",
    );
    expect(r.output).toContain("hostname: node_eutz");
    expect(r.output).toContain("1 passed, 0 failed");
    expect(r.status).toBe(0);
  });

  it("takes a Python script made from the evaluated nodes, as NixOS's testScript = { nodes, ... }: ''…''", () => {
    const dir = writeTests({
      "py-nodes": `{
  name: "py-nodes",
  containers: { server: { users: { users: { alice: { isNormalUser: true, uid: 1234 } } } } },
  testScript: ({ nodes }) => \`
    server.wait_for_unit("multi-user.target")
    uid = server.succeed("id -u alice").strip()
    assert uid == "\${nodes.server.config.users.users.alice.uid}", uid
    print("uid from the config:", \${nodes.server.config.users.users.alice.uid})
  \`,
}`,
    });
    const r = runCli(
      ["run", path.join(dir, "py-nodes.vmrig.ts"), "--rerun", "--output-dir", path.join(dir, "out")],
      dir,
    );
    expect(r.output).toContain("uid from the config: 1234");
    expect(r.output).toContain("1 passed, 0 failed");
    expect(r.status).toBe(0);
  });

  it("creates another machine of a node with create_machine: its own disk, the node's config, in machines", () => {
    const dir = writeTests({
      "py-create": `{
  name: "py-create",
  nodes: { machine: { networking: { hostName: "original" } } },
  testScript: ({ nodes }) => \`
    machine.succeed("echo original > /root/mark")
    clone = create_machine("\${nodes.machine.system.build.vm}/bin/run-machine-vm -smp 1", name="clone")
    assert [m.name for m in machines] == ["machine", "clone"], machines
    machine.shutdown()
    clone.wait_for_unit("multi-user.target")
    clone.fail("test -e /root/mark")
    assert clone.succeed("hostname").strip() == "original"
    assert clone.succeed("nproc").strip() == "1"
    try:
        create_machine("/bin/true")
    except Exception as e:
        print("refused:", e)
  \`,
}`,
    });
    const r = runCli(
      ["run", path.join(dir, "py-create.vmrig.ts"), "--rerun", "--output-dir", path.join(dir, "out")],
      dir,
    );
    expect(r.output).toContain("created machine clone of node machine (QEMU: -smp 1)");
    expect(r.output).toContain('refused: create_machine: "/bin/true" names no node\'s VM');
    expect(r.output).toContain("1 passed, 0 failed");
    expect(r.status).toBe(0);
  });

  it("stops a syntax error and an undefined name before anything boots: exit 2, naming the line", () => {
    const syntax = runPython("py-syntax", `    start_all()\n    if True\n        pass`);
    expect(syntax.status).toBe(2);
    expect(syntax.output).toMatch(new RegExp(`py-syntax\\.vmrig\\.ts:${syntax.lineOf("if True")}: SyntaxError`));
    expect(syntax.output).not.toContain("starting container");
    // `vmrig check` says the same, without running anything
    const checked = syntax.check();
    expect(checked.status).toBe(2);
    expect(checked.output).toMatch(new RegExp(`py-syntax\\.vmrig\\.ts:${syntax.lineOf("if True")}: SyntaxError`));
    const name = runPython("py-name", `    start_all()\n    sever.succeed("true")`);
    expect(name.status).toBe(2);
    expect(name.output).toMatch(new RegExp(`py-name\\.vmrig\\.ts:${name.lineOf("sever.")}: undefined name 'sever'`));
    expect(name.output).not.toContain("starting container");
  });

  it("fails on a Python assert or a failed call, with the line and vmrig's report", () => {
    const a = runPython("py-assert", `    x = server.succeed("echo 1").strip()\n    assert x == "2", f"x is {x}"`);
    expect(a.status).toBe(1);
    expect(a.output).toContain('assertion failed: x is 1 (assert x == "2", f"x is {x}")');
    expect(a.output).toMatch(new RegExp(`at .*py-assert\\.vmrig\\.ts:${a.lineOf("assert x")}`));
    const c = runPython("py-call", `    client.succeed("true")\n    server.succeed("echo out; exit 3")`);
    expect(c.status).toBe(1);
    expect(c.output).toContain('server.succeed("echo out; exit 3"): command failed with exit status 3');
    expect(c.output).toMatch(new RegExp(`at .*py-call\\.vmrig\\.ts:${c.lineOf("exit 3")}`));
  });

  it("fails when a polling condition stops holding inside its block", () => {
    const r = runPython(
      "py-polling",
      `    @polling_condition(seconds_interval=0)
    def marker_absent():
        "no /tmp/stop on the server"
        return server.execute("test -e /tmp/stop")[0] != 0

    with marker_absent:
        server.succeed("true")
        server.succeed("touch /tmp/stop")
        client.succeed("true")`,
    );
    expect(r.status).toBe(1);
    expect(r.output).toContain("Polling condition failed: no /tmp/stop on the server");
  });
});
