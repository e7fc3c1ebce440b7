import fs from "node:fs";
import path from "node:path";
import type { TestResult } from "../runner/run.js";
import { errorMessage } from "../util/errors.js";

// XML 1.0 forbids most control characters even when escaped.

const INVALID = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g;

function esc(s: string): string {
  return s
    .replace(INVALID, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

const secs = (ms: number) => (ms / 1000).toFixed(3);

/**
 * JUnit XML: a <testsuite> per test, a <testcase> per subtest, and one for
 * the script as a whole (so a failure outside any subtest is reported too).
 */
export function junitXml(results: TestResult[], timestamp = new Date()): string {
  const suites = results.map((r) => {
    const cases: string[] = [];
    for (const s of r.subtests) {
      const body =
        s.outcome === "failed"
          ? `<failure message="${esc((s.error ?? "").split("\n")[0] ?? "")}">${esc(s.error ?? "")}</failure>`
          : "";
      cases.push(
        `    <testcase classname="${esc(r.name)}" name="${esc(s.name)}" time="${secs(s.durationMs)}">${body}</testcase>`,
      );
    }
    const scriptBody =
      r.outcome === "skipped"
        ? "<skipped/>"
        : r.outcome === "failed"
          ? `<failure message="${esc(errorMessage(r.error).split("\n")[0] ?? "")}">${esc(errorMessage(r.error))}</failure>`
          : "";
    cases.push(
      `    <testcase classname="${esc(r.name)}" name="testScript" time="${secs(r.durationMs)}">${scriptBody}</testcase>`,
    );
    const failures = r.subtests.filter((s) => s.outcome === "failed").length + (r.outcome === "failed" ? 1 : 0);
    return [
      `  <testsuite name="${esc(r.name)}" tests="${cases.length}" failures="${failures}" errors="0" skipped="${r.outcome === "skipped" ? 1 : 0}" time="${secs(r.durationMs)}" timestamp="${timestamp.toISOString().slice(0, 19)}" file="${esc(r.file)}">`,
      ...cases,
      "  </testsuite>",
    ].join("\n");
  });
  const count = (f: (r: TestResult) => number) => results.reduce((n, r) => n + f(r), 0);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="vmrig" tests="${count((r) => r.subtests.length + 1)}" failures="${count((r) => r.subtests.filter((s) => s.outcome === "failed").length + (r.outcome === "failed" ? 1 : 0))}" time="${secs(count((r) => r.durationMs))}">`,
    ...suites,
    "</testsuites>",
    "",
  ].join("\n");
}

export function writeJunit(outputDir: string, results: TestResult[]): string {
  const file = path.join(outputDir, "junit.xml");
  fs.mkdirSync(outputDir, { recursive: true });
  fs.writeFileSync(file, junitXml(results));
  return file;
}
