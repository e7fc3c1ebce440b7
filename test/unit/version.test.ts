import { describe, expect, it } from "vitest";
import { vmrigCodeHash, vmrigVersion } from "../../src/util/version.js";

describe("what a cached pass is keyed by", () => {
  it("is a hash of vmrig's own code, not its version string", () => {
    const h = vmrigCodeHash();
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).toBe(vmrigCodeHash());
    expect(h).not.toContain(vmrigVersion());
  });
});
