import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { junitXml } from "../../src/reporters/junit.js";
import type { TestResult } from "../../src/driver/run.js";
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

  it("is well-formed XML", () => {
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-junit-")), "junit.xml");
    fs.writeFileSync(f, xml);
    // python3's expat parser is on every machine vmrig supports
    execFileSync("python3", ["-c", "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])", f]);
  });
});
