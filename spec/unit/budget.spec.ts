import { MemoryBudget, type BudgetHolder } from '../../lib/fanout/budget';

/** A holder whose bytes are in the budget; shedding gives them all back. */
class Holder implements BudgetHolder {
  constructor(
    readonly name: string,
    private readonly budget: MemoryBudget,
    public heldBytes: number,
    public stalled = false,
    private readonly shedLog: string[] = [],
    public stale = false,
  ) {
    budget.hold(heldBytes);
  }

  shed(stale: boolean): boolean {
    this.shedLog.push(stale ? `${this.name} (stale)` : this.name);
    if (this.heldBytes === 0) return false;
    this.budget.release(this.heldBytes);
    this.heldBytes = 0;
    return true;
  }
}

class Fixture {
  limit: number;
  readonly holders: Holder[] = [];
  readonly shed: string[] = [];
  readonly budget: MemoryBudget;

  constructor(limit: number) {
    this.limit = limit;
    this.budget = new MemoryBudget(
      () => this.limit,
      () => this.holders,
    );
  }

  add(name: string, bytes: number, stalled = false, stale = false): Holder {
    const holder = new Holder(name, this.budget, bytes, stalled, this.shed, stale);
    this.holders.push(holder);
    return holder;
  }
}

let fixture: Fixture | null = null;
beforeEach(() => {
  jest.useFakeTimers();
});
afterEach(() => {
  fixture?.budget.stop();
  fixture = null;
  jest.useRealTimers();
});

describe('MemoryBudget', () => {
  it('keeps the balance of what is held and released', () => {
    fixture = new Fixture(0);
    fixture.budget.hold(100);
    fixture.budget.hold(50);
    fixture.budget.release(30);
    expect(fixture.budget.bytes).toBe(120);
  });

  it('does nothing while under the limit', () => {
    fixture = new Fixture(1000);
    fixture.add('a', 600);
    fixture.add('b', 400);
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual([]);
  });

  it('acts at the end of the turn, never in the middle of the hold that passed the limit', () => {
    fixture = new Fixture(1000);
    fixture.add('a', 600);
    fixture.add('b', 600);
    expect(fixture.shed).toEqual([]);
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual(['a']);
  });

  it('schedules one check however many holds pass the limit in a turn', () => {
    fixture = new Fixture(100);
    for (let i = 0; i < 10; i += 1) fixture.add(`h${i}`, 50);
    // One at the end of the turn, and one watch for stale holders (past half the budget).
    expect(jest.getTimerCount()).toBe(2);
  });

  it('deals with stalled holders first, then the largest, until the total is under 90 % of the budget', () => {
    fixture = new Fixture(1000);
    fixture.add('small', 100);
    fixture.add('large', 500);
    fixture.add('medium', 300);
    fixture.add('stalled', 200, true);
    fixture.add('stalled-large', 250, true);
    fixture.add('tiny', 50);
    jest.runOnlyPendingTimers(); // 1400 held: 250 + 200 stalled, then the 500 brings it to 450
    expect(fixture.shed).toEqual(['stalled-large', 'stalled', 'large']);
    expect(fixture.budget.bytes).toBeLessThanOrEqual(900);
  });

  it('stops as soon as the total is at 90 % of the budget', () => {
    fixture = new Fixture(1000);
    fixture.add('a', 500);
    fixture.add('b', 400);
    fixture.add('c', 101);
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual(['a']); // 501 left: well under 900
    fixture.add('d', 450);
    fixture.add('e', 50); // 1001: d is the largest
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual(['a', 'd']);
  });

  it('past half the budget, deals with stale holders, largest first, until the total is under half', () => {
    fixture = new Fixture(1000);
    fixture.add('fresh', 300);
    fixture.add('stale-small', 100, false, true);
    fixture.add('stale-big', 200, false, true);
    jest.runOnlyPendingTimers(); // 600 held: the budget is not reached, but more than half of it is spent
    expect(fixture.shed).toEqual(['stale-big (stale)']);
    expect(fixture.budget.bytes).toBe(400);
    jest.advanceTimersByTime(1000);
    expect(fixture.shed).toEqual(['stale-big (stale)']);
    expect(jest.getTimerCount()).toBe(0); // under half: nothing to watch
  });

  it('keeps stale holders while at most half the budget is spent', () => {
    fixture = new Fixture(1000);
    fixture.add('stale', 500, true, true);
    jest.advanceTimersByTime(1000);
    expect(fixture.shed).toEqual([]);
  });

  it('looks again while past half the budget: a holder that turns stale later goes, without new holds', () => {
    fixture = new Fixture(1000);
    const holder = fixture.add('reader', 600);
    jest.advanceTimersByTime(500);
    expect(fixture.shed).toEqual([]);
    holder.stale = true;
    jest.advanceTimersByTime(100);
    expect(fixture.shed).toEqual(['reader (stale)']);
  });

  it('once the limit is dealt with, goes on with stale holders until the total is under half', () => {
    fixture = new Fixture(1000);
    fixture.add('large', 500);
    fixture.add('stale', 300, false, true);
    fixture.add('other', 250);
    jest.runOnlyPendingTimers(); // 1050: the largest leaves 550, under 90 %; then the stale one
    expect(fixture.shed).toEqual(['large', 'stale (stale)']);
    expect(fixture.budget.bytes).toBe(250);
  });

  it('goes on to the next holder when one frees less than needed', () => {
    fixture = new Fixture(1000);
    const big = fixture.add('big', 700);
    big.shed = function (this: Holder): boolean {
      fixture?.shed.push('big (kept)');
      return false;
    };
    fixture.add('next', 400);
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual(['big (kept)', 'next']);
  });

  it('skips holders that hold nothing', () => {
    fixture = new Fixture(100);
    fixture.add('empty', 0);
    fixture.add('full', 200);
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual(['full']);
  });

  it('does nothing when the total fell back under the limit before the end of the turn', () => {
    fixture = new Fixture(1000);
    const a = fixture.add('a', 1200);
    fixture.budget.release(a.heldBytes);
    a.heldBytes = 0;
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual([]);
  });

  it('reads the limit at every check: off at 0, and a change applies at once', () => {
    fixture = new Fixture(0);
    fixture.add('a', 5000);
    expect(jest.getTimerCount()).toBe(0);
    fixture.limit = 1000;
    fixture.add('b', 1);
    fixture.limit = 0;
    jest.runOnlyPendingTimers();
    expect(fixture.shed).toEqual([]);
  });

  it('can be stopped: a pending check is cancelled', () => {
    fixture = new Fixture(10);
    fixture.add('a', 100);
    fixture.budget.stop();
    expect(jest.getTimerCount()).toBe(0);
  });
});
