import { describe, expect, it } from "vitest";
import { MemoryBudget, shard } from "../../src/runner/schedule.js";

describe("--shard", () => {
  it("splits a suite into n disjoint parts that together are the whole suite", () => {
    const tests = ["a", "b", "c", "d", "e", "f", "g"];
    const parts = [1, 2, 3].map((i) => shard(tests, `${i}/3`));
    expect(parts).toEqual([
      ["a", "d", "g"],
      ["b", "e"],
      ["c", "f"],
    ]);
    expect(parts.flat().sort()).toEqual(tests);
    expect(shard(tests, undefined)).toEqual(tests);
  });

  it("rejects a malformed shard", () => {
    for (const bad of ["0/3", "4/3", "1/0", "x", "1-3"]) expect(() => shard([], bad)).toThrow(/expected i\/n/);
  });
});

describe("--jobs memory budget", () => {
  it("lets tests run side by side while their machines fit, and makes the next one wait", async () => {
    const budget = new MemoryBudget(3000);
    const a = await budget.take(1400);
    const b = await budget.take(1400);
    let cStarted = false;
    const c = budget.take(1400).then((release) => {
      cStarted = true;
      return release;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(cStarted).toBe(false);
    a();
    (await c)();
    expect(cStarted).toBe(true);
    b();
  });

  it("always runs one test, even one that wants more than the host has", async () => {
    const release = await new MemoryBudget(1000).take(5000);
    release();
  });
});
