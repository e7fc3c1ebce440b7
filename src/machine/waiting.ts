import type { MachineCore } from "./core.js";
import { poll, type Attempt } from "../util/poll.js";

export interface WaitSpec {
  /** the call as the user wrote it, e.g. `waitForFile("/tmp/x")` */
  call: string;
  /** the log heading, e.g. "waiting for file /tmp/x" */
  heading: string;
  /** what the timeout message says it waited for, e.g. "/tmp/x to exist" */
  what: string;
  /** seconds */
  timeout: number;
  location: string | undefined;
}

/**
 * Every `wait*` of the Machine API: a nested log entry, an attempt about once a second,
 * and on timeout one report naming the call, what it waited for and what the last
 * attempt saw.
 */
export function waitFor(m: MachineCore, w: WaitSpec, attempt: (lastTry: boolean) => Promise<Attempt>): Promise<void> {
  return m.nested(w.heading, () =>
    poll(w.timeout, attempt, (last) =>
      m.fail(`timed out after ${w.timeout} s waiting for ${w.what}`, w.call, { output: last, location: w.location }),
    ),
  );
}
