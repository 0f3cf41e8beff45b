/**
 * Deadlines of many clients on one timer: an entry is due once `timeout()` ms have passed since its start,
 * which `startOf` reads at each check (so a clock restarted by progress costs nothing). The timer runs only
 * while entries exist and checks a few times per timeout: no client costs a timer of its own.
 */
export class Deadlines<T> {
  private readonly entries = new Set<T>();
  private timer: NodeJS.Timeout | null = null;

  /**
   * @param timeout ms from start to due (0: off), read at each check
   * @param startOf when `entry`'s clock started
   * @param due called for each entry past its deadline (it is removed first)
   */
  constructor(
    private readonly timeout: () => number,
    private readonly startOf: (entry: T) => number,
    private readonly due: (entry: T) => void,
  ) {}

  /** Watches `entry`. */
  watch(entry: T): void {
    if (this.timeout() <= 0 || this.entries.has(entry)) return;
    this.entries.add(entry);
    if (this.timer === null) {
      const every = Math.max(20, Math.min(1000, this.timeout() / 4));
      this.timer = setInterval(() => this.check(), every);
      this.timer.unref();
    }
  }

  /** Stops watching `entry`. */
  clear(entry: T): void {
    this.entries.delete(entry);
  }

  /** Stops every clock. */
  stop(): void {
    this.entries.clear();
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private check(): void {
    const timeout = this.timeout();
    const now = Date.now();
    for (const entry of this.entries) {
      if (timeout <= 0 || now - this.startOf(entry) < timeout) continue;
      this.entries.delete(entry);
      this.due(entry);
    }
    if (this.entries.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}
