import { sleep } from "./proc.js";

export interface Attempt {
  done: boolean;
  /** what the last attempt saw, for the timeout's report */
  last?: string;
  /** stop at once with this error (waiting longer cannot help) */
  fatal?: Error;
}

/**
 * The one retry loop: call `attempt` about every `intervalMs` until it is done, fails
 * fatally, or `timeoutS` has passed (then `onTimeout` makes the error, from what the last
 * attempt saw). The last attempt is made at the deadline, never skipped.
 */
export async function poll(
  timeoutS: number,
  attempt: (lastTry: boolean) => Attempt | Promise<Attempt>,
  onTimeout: (last: string) => Error,
  intervalMs = 1000,
): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const lastTry = Date.now() >= deadline;
    const r = await attempt(lastTry);
    if (r.fatal) throw r.fatal;
    if (r.done) return;
    if (lastTry || Date.now() >= deadline) throw onTimeout(r.last ?? "");
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/** `poll` for a value: `attempt` returns it, or undefined to try again. */
export async function pollFor<T>(
  timeoutS: number,
  attempt: () => Promise<T | undefined>,
  onTimeout: (last: string) => Error,
  intervalMs = 200,
): Promise<T> {
  let value: T | undefined;
  await poll(
    timeoutS,
    async () => {
      value = await attempt();
      return { done: value !== undefined };
    },
    onTimeout,
    intervalMs,
  );
  return value as T;
}
