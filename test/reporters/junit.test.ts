import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { junitXml } from "../../src/reporters/junit.js";
import type { TestResult } from "../../src/runner/run.js";
import { VmrigError } from "../../src/util/errors.js";

const base = { configError: false, resultDir: "/r", bootMs: {}, file: "/t/x.vmrig.ts" };

describe("JUnit XML", () => {
  const results: TestResult[] = [
    {
      ...base,
      name: "one",
      outcome: "failed",
      durationMs: 2500,
      error: new VmrigError("command failed <&> \x01", { machine: "m", call: 'succeed("x")' }),
      subtests: [
        { name: "first", outcome: "passed", durationMs: 1000 },
        { name: "second", outcome: "failed", durationMs: 500, error: "boom" },
      ],
    },
    { ...base, name: "two", outcome: "skipped", durationMs: 0, subtests: [] },
  ];
  const xml = junitXml(results, new Date("2026-01-01T00:00:00Z"));

  it("has a case per subtest plus the script, with failures and skips", () => {
    expect(xml).toContain('<testsuite name="one" tests="3" failures="2"');
    expect(xml).toContain('<testcase classname="one" name="first" time="1.000"></testcase>');
    expect(xml).toContain('name="second" time="0.500"><failure message="boom">boom</failure>');
    expect(xml).toContain('<testsuite name="two" tests="1" failures="0" errors="0" skipped="1"');
    expect(xml).toContain("<skipped/>");
    expect(xml).toContain("command failed &lt;&amp;&gt; ");
    expect(xml).not.toContain("\x01");
  });

  it("validates against the common JUnit schema (xmllint)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-junit-"));
    const schema = path.resolve(import.meta.dirname, "../fixtures/junit-common.xsd");
    const passed: TestResult = {
      ...base,
      name: "three",
      outcome: "passed",
      durationMs: 1234,
      subtests: [{ name: "only", outcome: "passed", durationMs: 1 }],
    };
    for (const [i, doc] of [xml, junitXml([]), junitXml([passed])].entries()) {
      const f = path.join(dir, `junit-${i}.xml`);
      fs.writeFileSync(f, doc);
      execFileSync("xmllint", ["--noout", "--schema", schema, f], { stdio: "pipe" });
    }
    // and the schema is not a rubber stamp: a testcase without a name is rejected
    const bad = path.join(dir, "bad.xml");
    fs.writeFileSync(bad, xml.replace('name="first" ', ""));
    expect(() => execFileSync("xmllint", ["--noout", "--schema", schema, bad], { stdio: "pipe" })).toThrow(
      /fails to validate|name/,
    );
  });
});
