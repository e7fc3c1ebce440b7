import { describe, expect, it } from "vitest";
import { parseStartCommand } from "../../src/runner/python-api.js";

describe("create_machine's start command", () => {
  it("names the node by its start script, as NixOS names the machine, and keeps the words after it as QEMU options", () => {
    expect(parseStartCommand("/vmrig/vm/web/bin/run-web-vm")).toEqual({ node: "web", qemuOptions: [] });
    expect(parseStartCommand("/vmrig/vm/node_eu/bin/run-node_eu-vm -m 2048  -smp 1")).toEqual({
      node: "node_eu",
      qemuOptions: ["-m", "2048", "-smp", "1"],
    });
    expect(parseStartCommand("run-a-b-vm")).toEqual({ node: "a-b", qemuOptions: [] });
    expect(parseStartCommand("/bin/true")).toBeUndefined();
    expect(parseStartCommand("")).toBeUndefined();
  });
});
