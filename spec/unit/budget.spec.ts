import { MemoryBudget, type BudgetHolder } from '../../lib/fanout/budget';

/** A holder whose bytes are in the budget; shedding gives them all back. */
class Holder implements BudgetHolder {
  constructor(
    readonly name: string,
    private readonly budget: MemoryBudget,
    public heldBytes: number,
    public stalled = false,
    private readonly shedLog: string[] = [],
  ) {
    budget.hold(heldBytes);
  }

  shed(): boolean {
    this.shedLog.push(this.name);
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

  add(name: string, bytes: number, stalled = false): Holder {
    const holder = new Holder(name, this.budget, bytes, stalled, this.shed);
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
    jest.runAllTimers();
    expect(fixture.shed).toEqual([]);
  });

  it('acts at the end of the turn, never in the middle of the hold that passed the limit', () => {
    fixture = new Fixture(1000);
    fixture.add('a', 600);
    fixture.add('b', 600);
    expect(fixture.shed).toEqual([]);
    expect(jest.getTimerCount()).toBe(1);
    jest.runAllTimers();
    expect(fixture.shed).toEqual(['a']);
  });

  it('schedules one check however many holds pass the limit in a turn', () => {
    fixture = new Fixture(100);
    for (let i = 0; i < 10; i += 1) fixture.add(`h${i}`, 50);
    expect(jest.getTimerCount()).toBe(1);
  });

  it('deals with stalled holders first, then the largest, until the total is under 90 % of the budget', () => {
    fixture = new Fixture(1000);
    fixture.add('small', 100);
    fixture.add('large', 500);
    fixture.add('medium', 300);
    fixture.add('stalled', 200, true);
    fixture.add('stalled-large', 250, true);
    fixture.add('tiny', 50);
    jest.runAllTimers(); // 1400 held: 250 + 200 stalled, then the 500 brings it to 450
    expect(fixture.shed).toEqual(['stalled-large', 'stalled', 'large']);
    expect(fixture.budget.bytes).toBeLessThanOrEqual(900);
  });

  it('stops as soon as the total is at 90 % of the budget', () => {
    fixture = new Fixture(1000);
    fixture.add('a', 500);
    fixture.add('b', 400);
    fixture.add('c', 101);
    jest.runAllTimers();
    expect(fixture.shed).toEqual(['a']); // 501 left: well under 900
    fixture.add('d', 450);
    fixture.add('e', 50); // 1001: d is the largest
    jest.runAllTimers();
    expect(fixture.shed).toEqual(['a', 'd']);
  });

  it('goes on to the next holder when one frees less than needed', () => {
    fixture = new Fixture(1000);
    const big = fixture.add('big', 700);
    big.shed = function (this: Holder): boolean {
      fixture?.shed.push('big (kept)');
      return false;
    };
    fixture.add('next', 400);
    jest.runAllTimers();
    expect(fixture.shed).toEqual(['big (kept)', 'next']);
  });

  it('skips holders that hold nothing', () => {
    fixture = new Fixture(100);
    fixture.add('empty', 0);
    fixture.add('full', 200);
    jest.runAllTimers();
    expect(fixture.shed).toEqual(['full']);
  });

  it('does nothing when the total fell back under the limit before the end of the turn', () => {
    fixture = new Fixture(1000);
    const a = fixture.add('a', 1200);
    fixture.budget.release(a.heldBytes);
    a.heldBytes = 0;
    jest.runAllTimers();
    expect(fixture.shed).toEqual([]);
  });

  it('reads the limit at every check: off at 0, and a change applies at once', () => {
    fixture = new Fixture(0);
    fixture.add('a', 5000);
    expect(jest.getTimerCount()).toBe(0);
    fixture.limit = 1000;
    fixture.add('b', 1);
    fixture.limit = 0;
    jest.runAllTimers();
    expect(fixture.shed).toEqual([]);
  });

  it('can be stopped: a pending check is cancelled', () => {
    fixture = new Fixture(10);
    fixture.add('a', 100);
    fixture.budget.stop();
    expect(jest.getTimerCount()).toBe(0);
  });
});
