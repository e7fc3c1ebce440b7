import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { root, runCli, writeTests } from "./helpers.js";

// Many tests at once: --shard, --jobs, the HTML reporter, gc (black box).
const suite = writeTests;
const run = (args: string[], cwd: string) => runCli(args, cwd);

// A test that needs no VM: machines only boot when the script uses them.
const quick = (name: string) =>
  `{ name: ${JSON.stringify(name)}, nodes: { m: {} }, async testScript({ log }) { log(${JSON.stringify(`ran ${name}`)}); await Promise.resolve(); } }`;

describe("vmrig run over a suite", () => {
  it("--shard i/n runs every n-th test; the shards together run each test once", () => {
    const dir = suite({ a: quick("a"), b: quick("b"), c: quick("c") });
    const ran = [1, 2].map((i) => {
      const r = run(["run", "--rerun", "--shard", `${i}/2`, "--output-dir", "out"], dir);
      expect(r.status, r.output).toBe(0);
      return ["a", "b", "c"].filter((n) => r.output.includes(`ran ${n}`));
    });
    expect(ran).toEqual([["a", "c"], ["b"]]);
    const bad = run(["run", "--shard", "3/2"], dir);
    expect(bad.status).toBe(2);
    expect(bad.output).toContain("--shard 3/2: expected i/n");
  });

  it("--reporter html writes a report of every test, failures included", () => {
    const dir = suite({
      good: quick("good"),
      bad: `{ name: "bad", nodes: { m: {} }, async testScript() { await Promise.reject(new Error("the bad test failed on purpose")); } }`,
    });
    const r = run(["run", "--rerun", "--reporter", "list,html,junit", "--output-dir", "out"], dir);
    expect(r.status).toBe(1);
    expect(r.output).toContain("HTML report: out/index.html");
    const html = fs.readFileSync(path.join(dir, "out/index.html"), "utf8");
    expect(html).toContain("<title>vmrig: 1 passed, 1 failed</title>");
    expect(html).toContain("the bad test failed on purpose");
    expect(html).toContain('href="bad/log.txt"');
    expect(fs.readFileSync(path.join(dir, "out/junit.xml"), "utf8")).toContain('<testsuite name="bad"');
  });

  it("--retries runs a failed test again: a later pass is flaky (not cached), every attempt's folder is kept", () => {
    const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-retries-")), "failed-once");
    const dir = suite({
      flaky: `{ name: "flaky", nodes: { m: {} }, async testScript() {
  const fs = await import("node:fs");
  if (!fs.existsSync(${JSON.stringify(marker)})) { fs.writeFileSync(${JSON.stringify(marker)}, ""); throw new Error("fails the first time"); }
} }`,
      broken: `{ name: "broken", nodes: { m: {} }, async testScript() { await Promise.reject(new Error("fails every time")); } }`,
    });
    const r = run(["run", "--retries", "2", "--reporter", "list,html", "--output-dir", "out"], dir);
    expect(r.status, r.output).toBe(1);
    expect(r.output).toContain("flaky: failed (fails the first time); retry 1 of 2");
    expect(r.output).toContain("flaky: flaky: passed on retry 1 after failing");
    expect(r.output).toContain("broken: failed (fails every time); retry 2 of 2");
    expect(r.output).toContain("1 passed (1 flaky), 1 failed");
    for (const d of ["flaky", "flaky-retry1", "broken", "broken-retry1", "broken-retry2"])
      expect(fs.existsSync(path.join(dir, "out", d, "log.txt")), d).toBe(true);
    const html = fs.readFileSync(path.join(dir, "out/index.html"), "utf8");
    expect(html).toContain('<span class="badge flaky">flaky</span> flaky');
    expect(html).toContain("attempt 1 failed");
    // a flaky pass is not cached: the next run runs it again (and it passes now)
    const again = run(["run", "--output-dir", "out2", "flaky.vmrig.ts"], dir);
    expect(again.status, again.output).toBe(0);
    expect(again.output).not.toContain("cached");
    const bad = run(["run", "--retries", "-1"], dir);
    expect(bad.status).toBe(2);
  });

  it("an unknown reporter is bad input: exit 2 before any test runs, naming the known ones", () => {
    const dir = suite({ good: quick("good") });
    const r = run(["run", "--rerun", "--reporter", "list,junitt", "--output-dir", "out"], dir);
    expect(r.status).toBe(2);
    expect(r.output).toContain("unknown reporter `junitt`");
    expect(r.output).toContain("list, junit, html");
    expect(r.output).not.toContain("ran good");
  });

  it("--jobs 2 runs two VM tests side by side, each with its output prefixed", () => {
    const stamps = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-jobs-")), "stamps");
    const timed = (name: string) => `{
  name: "${name}",
  nodes: { m: {} },
  async testScript({ m }) {
    const fs = await import("node:fs");
    fs.appendFileSync(${JSON.stringify(stamps)}, "${name} start " + Date.now() + "\\n");
    await m.start();
    await m.succeed("sleep 4");
    fs.appendFileSync(${JSON.stringify(stamps)}, "${name} done " + Date.now() + "\\n");
  },
}`;
    const dir = suite({ one: timed("one"), two: timed("two") });
    const r = run(["run", "--rerun", "--jobs", "2", "--output-dir", "out"], dir);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain("2 passed, 0 failed");
    expect(r.output).toMatch(/^\[one\] /m);
    expect(r.output).toMatch(/^\[two\] /m);
    const t = Object.fromEntries(
      fs
        .readFileSync(stamps, "utf8")
        .trim()
        .split("\n")
        .map((l) => {
          const [n, what, at] = l.split(" ");
          return [`${n} ${what}`, Number(at)];
        }),
    );
    // Both tests were running at once: each started before the other finished. (Not "both
    // machines up at once": under TCG one boot may finish well after the other's.)
    expect(Math.max(t["one start"]!, t["two start"]!)).toBeLessThan(Math.min(t["one done"]!, t["two done"]!));
  });
});

describe("across CI machines: --reporter blob and vmrig merge-reports", () => {
  it("merges two shards into one JUnit (schema-valid) and one HTML report that list every test with its outcome", () => {
    const dir = suite({
      alpha: quick("alpha"),
      beta: quick("beta"),
      gamma: `{ name: "gamma", nodes: { m: {} }, async testScript() { await Promise.reject(new Error("gamma failed on purpose")); } }`,
      delta: quick("delta"),
    });
    const s1 = run(["run", "--rerun", "--shard", "1/2", "--reporter", "blob", "--output-dir", "s1"], dir);
    const s2 = run(["run", "--rerun", "--shard", "2/2", "--reporter", "blob", "--output-dir", "s2"], dir);
    expect(s1.output).toContain("blob: s1/blob.json");
    expect([s1.status, s2.status].sort()).toEqual([0, 1]); // gamma fails in one of them
    const m = run(["merge-reports", "s1", "s2", "--output-dir", "merged"], dir);
    expect(m.status).toBe(1);
    expect(m.output).toContain("3 passed, 1 failed (results in merged/)");
    expect(m.output).toMatch(/merged 4 results from 2 folders in [\d.]+ s/);
    const junit = path.join(dir, "merged/junit.xml");
    execFileSync("xmllint", ["--noout", "--schema", path.join(root, "test/fixtures/junit-common.xsd"), junit], {
      stdio: "pipe",
    });
    const xml = fs.readFileSync(junit, "utf8");
    for (const t of ["alpha", "beta", "gamma", "delta"]) expect(xml).toContain(`<testsuite name="${t}"`);
    expect(xml).toContain("gamma failed on purpose");
    // the report in a real browser: every test, gamma failed, its log copied and linked
    const dom = execFileSync(
      "chromium",
      ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", `file://${path.join(dir, "merged/index.html")}`],
      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
    );
    const outcomes: Record<string, string | undefined> = Object.fromEntries(
      [...dom.matchAll(/data-outcome="(\w+)">\s*<h2><span class="badge \w+">\w+<\/span> (\w+)/g)].map(
        (x) => [x[2] ?? "", x[1] ?? ""] as const,
      ),
    );
    expect(outcomes).toEqual({ alpha: "passed", beta: "passed", gamma: "failed", delta: "passed" });
    expect(dom).toContain('href="gamma/log.txt"');
    expect(fs.readFileSync(path.join(dir, "merged/gamma/log.txt"), "utf8")).toContain("gamma failed on purpose");
  });

  it("says what is wrong with a folder that holds no blob", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-noblob-"));
    const m = run(["merge-reports", dir], dir);
    expect(m.status).toBe(2);
    expect(m.output).toContain("has no blob.json");
    expect(m.output).toContain("--reporter blob");
  });
});

describe("vmrig gc", () => {
  it("reports what it would free without touching the store", () => {
    const before = fs.readdirSync(
      path.join(process.env.VMRIG_CACHE_DIR ?? path.join(os.homedir(), ".cache/vmrig"), "store"),
    ).length;
    const r = run(["gc", "--dry-run"], root);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toMatch(
      /would free \d+ MiB in \d+ store entries and \d+ cached results; kept \d+ entries \(\d+ MiB\) for \d+ tests/,
    );
    expect(
      fs.readdirSync(path.join(process.env.VMRIG_CACHE_DIR ?? path.join(os.homedir(), ".cache/vmrig"), "store")).length,
    ).toBe(before);
  });
});
