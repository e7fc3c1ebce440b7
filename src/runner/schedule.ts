import { VmrigError } from "../util/errors.js";

/** `--shard i/n`: every n-th test starting at the i-th (1-based), so each shard gets a mix. */
export function shard<T>(items: T[], spec: string | undefined): T[] {
  if (spec === undefined) return items;
  const m = /^(\d+)\/(\d+)$/.exec(spec);
  const i = Number(m?.[1]);
  const n = Number(m?.[2]);
  if (!m || n < 1 || i < 1 || i > n) {
    throw new VmrigError(`--shard ${spec}: expected i/n with 1 ≤ i ≤ n, e.g. --shard 2/3`, { kind: "config" });
  }
  return items.filter((_, k) => k % n === i - 1);
}

/** What QEMU needs beyond the guest's RAM (measured RSS over guest use: ~300 MiB under TCG). */
export const QEMU_OVERHEAD_MIB = 320;
/** What a container's systemd and a service or two take, for the same budget. */
export const CONTAINER_MIB = 128;

/**
 * Tests wait for memory before booting: the host's available memory is shared
 * out, and one test always runs even if it alone wants more.
 */
export class MemoryBudget {
  private inUse = 0;
  private running = 0;
  private waiters: (() => void)[] = [];
  constructor(private readonly totalMiB: number) {}

  async take(mib: number): Promise<() => void> {
    // bounded: a waiter is woken when a running test ends, and each has its deadline
    while (this.running > 0 && this.inUse + mib > this.totalMiB) await new Promise<void>((r) => this.waiters.push(r));
    this.inUse += mib;
    this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= mib;
      this.running--;
      this.waiters.splice(0).forEach((w) => w());
    };
  }
}
