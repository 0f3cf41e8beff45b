import type { MemoryAccount } from './slab';

/** A client as the memory budget sees it. */
export interface BudgetHolder {
  /** Bytes it holds: its outbound queue and writes in flight, and its held input. */
  readonly heldBytes: number;
  /** True when it is behind and not taking bytes (dealt with before readers that are merely slow). */
  readonly stalled: boolean;
  /**
   * The budget is over: frees what it holds by its policy (drop its oldest queued messages, or leave).
   * @returns true when it freed anything
   */
  shed(): boolean;
}

/** Once over, holders are dealt with until the total is back under this share of the budget. */
const LOW_WATER = 0.9;

/**
 * The process-wide memory budget: everything the server holds for clients (queued and in-flight output,
 * held input, partial lines), each shared Buffer counted once (slabs count themselves while a queue or write
 * references them). Reaching it deals with the largest holders first, stalled ones before slow ones, by their
 * policy, until the total is back under 90 % of it.
 */
export class MemoryBudget implements MemoryAccount {
  private total = 0;
  private pending: NodeJS.Immediate | null = null;

  /**
   * @param limit the budget in bytes (0: off), read at every check so that config() changes apply
   * @param holders every client that may hold memory
   */
  constructor(
    private readonly limit: () => number,
    private readonly holders: () => Iterable<BudgetHolder>,
  ) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.total;
  }

  hold(bytes: number): void {
    this.total += bytes;
    const limit = this.limit();
    // Acting at once could run user code (events) in the middle of a fan-out or a read: at the end of the turn.
    if (limit > 0 && this.total > limit && this.pending === null) this.pending = setImmediate(this.enforce);
  }

  release(bytes: number): void {
    this.total -= bytes;
  }

  /** Cancels a pending check (the multiplexer is gone). */
  stop(): void {
    if (this.pending !== null) clearImmediate(this.pending);
    this.pending = null;
  }

  /** Deals with the largest holders until the total is back under the low-water mark. */
  readonly enforce = (): void => {
    this.pending = null;
    const limit = this.limit();
    if (limit <= 0 || this.total <= limit) return;
    const holders = [...this.holders()].filter((holder) => holder.heldBytes > 0);
    holders.sort((a, b) => Number(b.stalled) - Number(a.stalled) || b.heldBytes - a.heldBytes);
    for (const holder of holders) {
      if (this.total <= limit * LOW_WATER) break;
      holder.shed();
    }
  };
}
