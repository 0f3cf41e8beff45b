import { Deadlines } from '../../lib/core/deadlines';

interface Entry {
  name: string;
  start: number;
}

class Fixture {
  timeout = 1000;
  readonly due: string[] = [];
  readonly deadlines = new Deadlines<Entry>(
    () => this.timeout,
    (entry) => entry.start,
    (entry) => this.due.push(entry.name),
  );

  entry(name: string): Entry {
    return { name, start: Date.now() };
  }
}

let fixture: Fixture;
beforeEach(() => {
  jest.useFakeTimers({ now: 50_000 });
  fixture = new Fixture();
});
afterEach(() => {
  fixture.deadlines.stop();
  jest.useRealTimers();
});

describe('Deadlines', () => {
  it('calls due once an entry has been watched for the timeout since its start', () => {
    const entry = fixture.entry('a');
    fixture.deadlines.watch(entry);
    jest.advanceTimersByTime(999);
    expect(fixture.due).toEqual([]);
    jest.advanceTimersByTime(300);
    expect(fixture.due).toEqual(['a']);
  });

  it('calls due once per entry, and stops watching it', () => {
    fixture.deadlines.watch(fixture.entry('a'));
    jest.advanceTimersByTime(10_000);
    expect(fixture.due).toEqual(['a']);
  });

  it('measures from startOf, read at each check: a clock restarted by progress costs nothing', () => {
    const entry = fixture.entry('a');
    fixture.deadlines.watch(entry);
    jest.advanceTimersByTime(800);
    entry.start = Date.now(); // progress
    jest.advanceTimersByTime(800);
    expect(fixture.due).toEqual([]);
    jest.advanceTimersByTime(500);
    expect(fixture.due).toEqual(['a']);
  });

  it('counts from the start even when watching began later', () => {
    const entry = fixture.entry('a');
    jest.advanceTimersByTime(900);
    fixture.deadlines.watch(entry);
    jest.advanceTimersByTime(350);
    expect(fixture.due).toEqual(['a']);
  });

  it('forgets an entry that is cleared', () => {
    const [a, b] = [fixture.entry('a'), fixture.entry('b')];
    fixture.deadlines.watch(a);
    fixture.deadlines.watch(b);
    fixture.deadlines.clear(a);
    jest.advanceTimersByTime(2000);
    expect(fixture.due).toEqual(['b']);
  });

  it('watches an entry once however often it is watched', () => {
    const entry = fixture.entry('a');
    fixture.deadlines.watch(entry);
    fixture.deadlines.watch(entry);
    jest.advanceTimersByTime(2000);
    expect(fixture.due).toEqual(['a']);
  });

  it('lets due watch the entry again, with a new start', () => {
    const entry = fixture.entry('a');
    const deadlines = new Deadlines<Entry>(
      () => 1000,
      (watched) => watched.start,
      (watched) => {
        fixture.due.push(watched.name);
        watched.start = Date.now();
        if (fixture.due.length < 3) deadlines.watch(watched);
      },
    );
    try {
      deadlines.watch(entry);
      jest.advanceTimersByTime(10_000);
      expect(fixture.due).toEqual(['a', 'a', 'a']);
    } finally {
      deadlines.stop();
    }
  });

  it('runs one timer, only while it watches entries', () => {
    expect(jest.getTimerCount()).toBe(0);
    const entries = ['a', 'b', 'c'].map((name) => fixture.entry(name));
    for (const entry of entries) fixture.deadlines.watch(entry);
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(1250);
    expect(fixture.due).toEqual(['a', 'b', 'c']);
    expect(jest.getTimerCount()).toBe(0);
    fixture.deadlines.watch(fixture.entry('d'));
    expect(jest.getTimerCount()).toBe(1);
  });

  it('stops its timer at the next check once every entry is cleared', () => {
    const entry = fixture.entry('a');
    fixture.deadlines.watch(entry);
    fixture.deadlines.clear(entry);
    jest.advanceTimersByTime(250);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('checks a few times per timeout: four, between 20 ms and 1 s apart', () => {
    const entry = fixture.entry('a');
    fixture.timeout = 100;
    fixture.deadlines.watch(entry);
    jest.advanceTimersByTime(99);
    expect(fixture.due).toEqual([]);
    jest.advanceTimersByTime(26);
    expect(fixture.due).toEqual(['a']);
  });

  it('watches nothing while the timeout is 0, and reads the timeout at each check', () => {
    fixture.timeout = 0;
    fixture.deadlines.watch(fixture.entry('off'));
    expect(jest.getTimerCount()).toBe(0);
    fixture.timeout = 1000;
    fixture.deadlines.watch(fixture.entry('a'));
    fixture.timeout = 0; // turned off while watched: never due
    jest.advanceTimersByTime(5000);
    expect(fixture.due).toEqual([]);
    fixture.timeout = 3000; // a longer timeout applies to entries already watched
    jest.advanceTimersByTime(1000);
    expect(fixture.due).toEqual(['a']);
  });

  it('stop clears every entry and the timer', () => {
    fixture.deadlines.watch(fixture.entry('a'));
    fixture.deadlines.stop();
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(5000);
    expect(fixture.due).toEqual([]);
  });
});
