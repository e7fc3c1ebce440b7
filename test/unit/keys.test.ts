import { describe, expect, it } from "vitest";
import { keyFor, parseKeyCombo } from "../../src/machine/keys.js";

describe("key combinations", () => {
  it("reads QEMU's sendkey syntax: names joined by '-', digits as keys, 0x… as scancodes", () => {
    expect(parseKeyCombo("ctrl-alt-f1")).toEqual([
      { type: "qcode", data: "ctrl" },
      { type: "qcode", data: "alt" },
      { type: "qcode", data: "f1" },
    ]);
    expect(parseKeyCombo("1")).toEqual([{ type: "qcode", data: "1" }]);
    expect(parseKeyCombo("shift-0x1c")).toEqual([
      { type: "qcode", data: "shift" },
      { type: "number", data: 0x1c },
    ]);
    expect(parseKeyCombo(keyFor(":"))).toEqual([
      { type: "qcode", data: "shift" },
      { type: "qcode", data: "semicolon" },
    ]);
    expect(() => parseKeyCombo("ctrl--")).toThrow(/not a key combination/);
    expect(() => parseKeyCombo("")).toThrow(/not a key combination/);
  });
});
