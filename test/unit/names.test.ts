import { describe, expect, it } from "vitest";
import { checkMachineNames } from "../../src/session/context.js";
import { errorOf } from "./fixtures.js";

describe("machine names", () => {
  it("takes NixOS's node names, '_' included (nixpkgs' timezone.nix has node_eutz)", () => {
    expect(() => checkMachineNames("t", ["node_eutz", "node-b", "server1"], [])).not.toThrow();
  });

  it("refuses what is no host name, saying what is allowed", () => {
    for (const bad of ["1st", "a.b", "trailing-", "trailing_", "sp ace"]) {
      const e = errorOf(() => checkMachineNames("test t", [bad], []));
      expect(e.message).toContain(`node name \`${bad}\` is not a valid host name`);
      expect(e.message).toContain("'-' and '_'");
    }
  });

  it("refuses a '_' in a container's name, which systemd-nspawn would refuse, and says what to do", () => {
    const e = errorOf(() => checkMachineNames("test t", [], ["web_1"]));
    expect(e.message).toContain("systemd-nspawn refuses");
    expect(e.hint).toContain("web-1");
  });

  it("refuses a name taken by a global, and one declared twice", () => {
    expect(errorOf(() => checkMachineNames("test t", ["retry"], [])).message).toContain(
      "collides with the script global",
    );
    expect(errorOf(() => checkMachineNames("test t", ["close"], [], ["close"])).message).toContain("collides");
    expect(errorOf(() => checkMachineNames("test t", ["a"], ["a"])).message).toContain("declared in both");
    expect(errorOf(() => checkMachineNames("test t", [], [])).message).toContain("declare at least one machine");
  });
});
