import type { Reporter } from "../runner/reporter.js";
import { configError } from "../util/errors.js";
import { blobReporter } from "./blob.js";
import { writeHtml } from "./html.js";
import { writeJunit } from "./junit.js";

/** The summary line; the live list of calls is the driver's log itself. */
const list: Reporter = {
  onEnd: (_results, s) =>
    `\n${s.passed} passed${s.cached ? ` (${s.cached} cached)` : ""}${s.flaky ? ` (${s.flaky} flaky)` : ""}, ${s.failed} failed${s.skipped ? `, ${s.skipped} skipped` : ""} (results in ${s.outputDir}/)`,
};

/** `--reporter` names → reporters (given the run's `--shard`, if any). */
export const REPORTERS: Record<string, (shard?: string) => Reporter> = {
  list: () => list,
  junit: () => ({ onEnd: (results, s) => `JUnit XML: ${writeJunit(s.outputDir, results)}` }),
  html: () => ({ onEnd: (results, s) => `HTML report: ${writeHtml(s.outputDir, results)}` }),
  blob: (shard) => blobReporter(shard),
};

/** `--reporter a,b`: list always comes first; an unknown name is bad input (exit 2), found before anything runs. */
export function reportersByName(spec: string, shard?: string): Reporter[] {
  const names = [
    ...new Set([
      "list",
      ...spec
        .split(",")
        .map((r) => r.trim())
        .filter(Boolean),
    ]),
  ];
  for (const n of names) {
    if (!REPORTERS[n])
      throw configError(`unknown reporter \`${n}\``, {
        hint: `--reporter takes a comma-separated list of: ${Object.keys(REPORTERS).join(", ")}`,
      });
  }
  return names.map((n) => REPORTERS[n]!(shard));
}
