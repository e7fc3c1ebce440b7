/** Something with a limited number of holders: `take()` resolves to the release function. */
export interface Slots {
  take(): Promise<() => void>;
}

/** At most `size` holders at once; the rest wait in order. */
export class Semaphore implements Slots {
  private held = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {}

  async take(): Promise<() => void> {
    if (this.held >= this.size) await new Promise<void>((r) => this.waiting.push(r));
    else this.held++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next)
        next(); // the slot passes on: held stays the same
      else this.held--;
    };
  }

  async with<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.take();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
