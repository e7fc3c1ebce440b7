import type { TestResult } from "./run.js";

/**
 * What a reporter hears of a suite run (Playwright's and Vitest's model): every test as
 * it ends, then the whole run. The driver calls them; `reporters/` implements them.
 */
export interface Reporter {
  onTestEnd?(result: TestResult): void;
  /** the run is over: write files, print summaries; returns what to tell the user, if anything */
  onEnd?(results: TestResult[], summary: SuiteSummary): string | undefined;
}

export interface SuiteSummary {
  outputDir: string;
  passed: number;
  cached: number;
  failed: number;
  skipped: number;
  /** passed only on a retry (`--retries`) */
  flaky: number;
  interrupted: boolean;
}
