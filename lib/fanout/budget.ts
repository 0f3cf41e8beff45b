import type { MemoryAccount } from './slab';

/** A client as the memory budget sees it. */
export interface BudgetHolder {
  /** Bytes it holds: its outbound queue and writes in flight, and its held input. */
  readonly heldBytes: number;
  /** True when it is behind and not taking bytes (dealt with before readers that are merely slow). */
  readonly stalled: boolean;
  /**
   * True when it holds output that its connection took nothing of for {@link STALE_MS}, and it never showed
   * it reads (it never read its way out of a backlog; its kernel took no more than a peer that never reads holds).
   */
  readonly stale: boolean;
  /**
   * The budget is over, or half spent with this holder stale: frees what it holds by its policy (drop its
   * oldest queued messages, or leave).
   * @param stale it goes as a stale holder of a half-spent budget, not because the budget is reached
   * @returns true when it freed anything
   */
  shed(stale: boolean): boolean;
}

/** Once over, holders are dealt with until the total is back under this share of the budget. */
const LOW_WATER = 0.9;
/** Past this share of the budget, stale holders are dealt with until the total is back under it. */
const STALE_MARK = 0.5;
/** A holder whose connection took nothing for this long while it had output waiting is stale. */
export const STALE_MS = 1000;
/** How often stale holders are looked for while more than half the budget is spent. */
const STALE_CHECK_MS = 100;

/**
 * The process-wide memory budget: everything the server holds for clients (queued and in-flight output,
 * held input, partial lines), each shared Buffer counted once (slabs count themselves while a queue or write
 * references them). Reaching it deals with the largest holders first, stalled ones before slow ones, by their
 * policy, until the total is back under 90 % of it.
 *
 * Past half of it, holders that never showed they read and whose connection took nothing for a second while
 * output waited for it (peers that never read) are dealt with, largest first, until the total is back under
 * half. What they free leaves the process only at V8's next garbage collection, some 64 MiB of allocation
 * later: without this, a crowd of such peers keeps the budget at its limit and the process that far above it.
 */
export class MemoryBudget implements MemoryAccount {
  private total = 0;
  private pending: NodeJS.Immediate | null = null;
  /** Looks for stale holders while more than half the budget is spent. */
  private staleTimer: NodeJS.Timeout | null = null;
  private stopped = false;

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
    if (limit <= 0 || this.stopped || this.total <= limit * STALE_MARK) return;
    // Acting at once could run user code (events) in the middle of a fan-out or a read: at the end of the turn.
    if (this.total > limit && this.pending === null) this.pending = setImmediate(this.enforce);
    else this.watchStale(limit);
  }

  release(bytes: number): void {
    this.total -= bytes;
  }

  /** Cancels pending checks (the multiplexer is gone). */
  stop(): void {
    this.stopped = true;
    if (this.pending !== null) clearImmediate(this.pending);
    if (this.staleTimer !== null) clearTimeout(this.staleTimer);
    this.pending = null;
    this.staleTimer = null;
  }

  /**
   * Deals with the largest holders until the total is back under the low-water mark, then with stale ones
   * until it is under half the budget.
   */
  readonly enforce = (): void => {
    this.pending = null;
    const limit = this.limit();
    if (limit <= 0 || this.total <= limit * STALE_MARK) return;
    const holders = [...this.holders()].filter((holder) => holder.heldBytes > 0);
    if (this.total > limit) {
      holders.sort((a, b) => Number(b.stalled) - Number(a.stalled) || b.heldBytes - a.heldBytes);
      for (const holder of holders) {
        if (this.total <= limit * LOW_WATER) break;
        holder.shed(false);
      }
    }
    const stale = holders.filter((holder) => holder.heldBytes > 0 && holder.stale);
    stale.sort((a, b) => b.heldBytes - a.heldBytes);
    for (const holder of stale) {
      if (this.total <= limit * STALE_MARK) break;
      holder.shed(true);
    }
    this.watchStale(limit);
  };

  /** Checks again soon while more than half the budget is spent: a holder may become stale meanwhile. */
  private watchStale(limit: number): void {
    if (this.staleTimer !== null || this.stopped || limit <= 0 || this.total <= limit * STALE_MARK) return;
    this.staleTimer = setTimeout(() => {
      this.staleTimer = null;
      if (this.pending === null) this.enforce();
    }, STALE_CHECK_MS);
    this.staleTimer.unref();
  }
}
