import { LineDecoder } from '../../lib/framing/line';
import { HELD_MESSAGE_OVERHEAD, Inbound, type InboundOwner } from '../../lib/inbound/inbound';
import { TokenBuckets } from '../../lib/inbound/rate-limiter';
import type { Settings } from '../../lib/options';
import { settingsWith } from '../helpers/fanout';

/**
 * The session side of an Inbound, recording what it is told. `process` records each message (a copy of its
 * wire) and returns undefined, or the Promise `asyncFor` gives for it (an async filter running).
 */
class Owner implements InboundOwner {
  readonly processed: string[] = [];
  readonly overflows: number[] = [];
  readonly partials: boolean[] = [];
  pauses = 0;
  resumes = 0;
  flowHolding = false;
  holdsForFlow = 0;
  throttles = 0;
  exceeded = 0;
  /** The balance of heldInput. */
  held = 0;
  ended = 0;
  inputsDone = 0;
  asyncFor: (wire: string) => Promise<void> | undefined = () => undefined;
  /** What rateExceeded does (a session leaves, dropping the input). */
  onExceeded: () => void = () => undefined;
  readonly inbound: Inbound;

  constructor(
    readonly settings: Settings,
    maxMessageBytes = 1024,
  ) {
    this.inbound = new Inbound(new LineDecoder({ maxMessageBytes }), this);
  }

  get reading(): boolean {
    return this.pauses === this.resumes;
  }

  process(_payload: Buffer, wire: Buffer): Promise<void> | undefined {
    const text = wire.toString('latin1');
    this.processed.push(text);
    return this.asyncFor(text);
  }

  overflow(bytes: number): void {
    this.overflows.push(bytes);
  }

  pauseReading(): void {
    this.pauses += 1;
  }

  resumeReading(): void {
    this.resumes += 1;
  }

  holdForFlow(): void {
    this.holdsForFlow += 1;
  }

  throttled(): void {
    this.throttles += 1;
  }

  rateExceeded(): void {
    this.exceeded += 1;
    this.onExceeded();
  }

  heldInput(delta: number): void {
    this.held += delta;
  }

  inputEnded(): void {
    this.ended += 1;
  }

  inputDone(): void {
    this.inputsDone += 1;
  }

  partial(begun: boolean): void {
    this.partials.push(begun);
  }

  /** Turns rate limits on, as a session does when its settings have any. */
  rateLimited(): this {
    this.inbound.rate = new TokenBuckets(this.settings, Date.now());
    return this;
  }

  receive(text: string): void {
    this.inbound.receive(Buffer.from(text, 'latin1'));
  }
}

/** A Promise to settle from the test. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Lets Promise callbacks run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
};

let owner: Owner | null = null;
beforeEach(() => {
  jest.useFakeTimers({ now: 10_000 });
});
afterEach(() => {
  owner?.inbound.stop();
  owner = null;
  jest.useRealTimers();
});

describe('Inbound', () => {
  describe('framing and processing', () => {
    it('holds messages until the client is admitted, then processes them in order', () => {
      owner = new Owner(settingsWith());
      owner.receive('one\ntwo\n');
      expect(owner.processed).toEqual([]);
      expect(owner.held).toBe(owner.inbound.heldBytes);
      expect(owner.inbound.heldBytes).toBe(8 + 2 * HELD_MESSAGE_OVERHEAD);
      owner.inbound.grant();
      expect(owner.processed).toEqual(['one\n', 'two\n']);
      expect(owner.held).toBe(0);
    });

    it('frames and processes a chunk at once once admitted', () => {
      owner = new Owner(settingsWith());
      owner.inbound.grant();
      owner.receive('one\ntw');
      expect(owner.processed).toEqual(['one\n']);
      owner.receive('o\n');
      expect(owner.processed).toEqual(['one\n', 'two\n']);
    });

    it('reports a partial message when it begins and when it ends, and counts its memory', () => {
      owner = new Owner(settingsWith());
      owner.inbound.grant();
      owner.receive('part');
      expect(owner.partials).toEqual([true]);
      expect(owner.inbound.partialSince).toBe(Date.now());
      expect(owner.held).toBeGreaterThanOrEqual(4);
      owner.receive('ial\n');
      expect(owner.partials).toEqual([true, false]);
      expect(owner.held).toBe(0);
    });

    it('passes an over-long line to the owner', () => {
      owner = new Owner(settingsWith(), 3);
      owner.inbound.grant();
      owner.receive('toolong\nok\n');
      expect(owner.overflows).toEqual([8]);
      expect(owner.processed).toEqual(['ok\n']);
    });

    it('holds the messages after one whose async filter runs, and processes them in order once it settles', async () => {
      owner = new Owner(settingsWith());
      const filter = gate();
      owner.asyncFor = (wire) => (wire === 'slow\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive('slow\nnext\nlast\n');
      expect(owner.processed).toEqual(['slow\n']);
      filter.open();
      await settle();
      expect(owner.processed).toEqual(['slow\n', 'next\n', 'last\n']);
      expect(owner.held).toBe(0);
    });
  });

  describe('maxPendingBytes', () => {
    const maxPendingBytes = 16 * 1024;

    it('bounds what is held in real bytes: a 64 KiB chunk of empty lines while rate-limited is not 65 536 messages', () => {
      owner = new Owner(settingsWith({ maxPendingBytes, maxMessagesPerSecond: 1000 })).rateLimited();
      owner.inbound.grant();
      const lines = 64 * 1024;
      owner.inbound.receive(Buffer.alloc(lines, 0x0a));
      expect(owner.processed).toHaveLength(1000); // one second worth went at once
      // Held bytes: what is not framed yet (as it arrived) plus each framed message with its overhead.
      const framedWaiting = (owner.inbound.heldBytes - (lines - owner.processed.length)) / HELD_MESSAGE_OVERHEAD;
      expect(framedWaiting).toBeGreaterThan(0);
      expect(framedWaiting).toBeLessThanOrEqual(maxPendingBytes / (1 + HELD_MESSAGE_OVERHEAD) + 1);
      expect(owner.held).toBe(owner.inbound.heldBytes);
      expect(owner.inbound.heldBytes).toBeLessThan(lines + maxPendingBytes);
      expect(owner.reading).toBe(false);
      jest.advanceTimersByTime(70_000); // a message per ms
      expect(owner.processed).toHaveLength(lines);
      expect(owner.held).toBe(0);
      expect(owner.reading).toBe(true);
    });

    it('stops framing at the bound and resumes as the inbox drains, until everything went, in order', () => {
      owner = new Owner(settingsWith({ maxPendingBytes, maxMessagesPerSecond: 1000 })).rateLimited();
      owner.inbound.grant();
      const chunk = Buffer.from(Array.from({ length: 3000 }, (_, i) => `${i}\n`).join(''));
      owner.inbound.receive(chunk);
      expect(owner.processed).toHaveLength(1000);
      let most = owner.inbound.heldBytes;
      for (let second = 0; second < 3; second += 1) {
        for (let ms = 0; ms < 1000; ms += 10) {
          jest.advanceTimersByTime(10);
          most = Math.max(most, owner.inbound.heldBytes);
        }
      }
      expect(most).toBeLessThanOrEqual(chunk.length + maxPendingBytes);
      expect(owner.processed).toEqual(Array.from({ length: 3000 }, (_, i) => `${i}\n`));
      expect(owner.held).toBe(0);
      expect(owner.inbound.heldBytes).toBe(0);
      expect(owner.reading).toBe(true);
    });

    it('leaves what was not framed yet unframed: later chunks wait behind it, in order', () => {
      owner = new Owner(settingsWith({ maxPendingBytes: 1024 }));
      const filter = gate();
      owner.asyncFor = (wire) => (wire === 'first\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive(`first\n${'x\n'.repeat(100)}`);
      owner.receive('later\n');
      expect(owner.processed).toEqual(['first\n']);
      expect(owner.inbound.stashed).toBe(false); // it waits for the inbox, not only for receivers
      filter.open();
      return settle().then(() => {
        expect(owner?.processed).toEqual(['first\n', ...Array<string>(100).fill('x\n'), 'later\n']);
      });
    });

    it('pauses reading once while input waits, and resumes once it is all out', async () => {
      owner = new Owner(settingsWith({ maxPendingBytes: 1024 }));
      const filter = gate();
      owner.asyncFor = (wire) => (wire === 'first\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive(`first\n${'x\n'.repeat(100)}`);
      owner.receive('y\n');
      owner.receive('z\n');
      expect(owner.pauses).toBe(1);
      expect(owner.resumes).toBe(0);
      filter.open();
      await settle();
      expect(owner.resumes).toBe(1);
      expect(owner.reading).toBe(true);
    });
  });

  describe('rate limits', () => {
    it('holds messages past the rate, pausing reading, and lets them go as tokens come', () => {
      owner = new Owner(settingsWith({ maxMessagesPerSecond: 2 })).rateLimited();
      owner.inbound.grant();
      owner.receive('1\n2\n3\n4\n');
      expect(owner.processed).toEqual(['1\n', '2\n']);
      expect(owner.reading).toBe(false);
      jest.advanceTimersByTime(500);
      expect(owner.processed).toEqual(['1\n', '2\n', '3\n']);
      jest.advanceTimersByTime(500);
      expect(owner.processed).toEqual(['1\n', '2\n', '3\n', '4\n']);
      expect(owner.reading).toBe(true);
    });

    it('reports throttled once per episode', () => {
      owner = new Owner(settingsWith({ maxMessagesPerSecond: 2, maxBytesPerSecond: 1000 })).rateLimited();
      owner.inbound.grant();
      owner.receive('1\n2\n3\n4\n5\n');
      jest.advanceTimersByTime(2000);
      expect(owner.throttles).toBe(1);
      jest.advanceTimersByTime(5000); // the buckets fill up again
      owner.receive('6\n7\n8\n');
      expect(owner.throttles).toBe(2);
    });

    it('in disconnect mode, reports rateExceeded and holds nothing when the session drops the input', () => {
      owner = new Owner(settingsWith({ maxMessagesPerSecond: 1, rateLimitAction: 'disconnect' })).rateLimited();
      owner.onExceeded = () => owner?.inbound.drop();
      owner.inbound.grant();
      owner.receive('1\n2\n3\n');
      expect(owner.processed).toEqual(['1\n']);
      expect(owner.exceeded).toBe(1);
      expect(owner.held).toBe(0);
      jest.advanceTimersByTime(5000);
      expect(owner.processed).toEqual(['1\n']);
    });
  });

  describe('flow control', () => {
    it('keeps input unframed while receivers are behind, and frames it when released', () => {
      owner = new Owner(settingsWith());
      owner.inbound.grant();
      owner.flowHolding = true;
      owner.receive('one\n');
      owner.receive('two\n');
      expect(owner.processed).toEqual([]);
      expect(owner.holdsForFlow).toBe(2);
      expect(owner.inbound.stashed).toBe(true);
      expect(owner.held).toBe(8);
      owner.flowHolding = false;
      expect(owner.inbound.releaseFromFlow(1)).toBe(4); // at least one chunk, about `max` bytes
      expect(owner.processed).toEqual(['one\n']);
      expect(owner.inbound.releaseFromFlow(1000)).toBe(4);
      expect(owner.processed).toEqual(['one\n', 'two\n']);
      expect(owner.inbound.stashed).toBe(false);
    });

    it('reports the input done once what a departed client sent while receivers were behind is released', () => {
      owner = new Owner(settingsWith());
      owner.inbound.grant();
      owner.flowHolding = true;
      owner.receive('one\ntwo\n');
      owner.inbound.depart(); // it reset while its input waited for receivers to catch up
      expect(owner.inputsDone).toBe(0);
      owner.flowHolding = false;
      owner.inbound.releaseFromFlow(1000);
      expect(owner.processed).toEqual(['one\n', 'two\n']);
      expect(owner.inbound.done).toBe(true);
      expect(owner.inputsDone).toBe(1); // else its session never finishes, and keeps its connection slot
    });

    it('pauses and resumes reading for flow control', () => {
      owner = new Owner(settingsWith());
      owner.inbound.pauseForFlow();
      expect(owner.reading).toBe(false);
      owner.inbound.resumeFromFlow();
      expect(owner.reading).toBe(true);
      owner.inbound.resumeFromFlow();
      expect(owner.resumes).toBe(1);
    });
  });

  describe('the end', () => {
    it('delivers a last line without its newline at EOF, then reports the input ended and done', () => {
      owner = new Owner(settingsWith());
      owner.inbound.grant();
      owner.receive('one\nlast');
      expect(owner.inbound.done).toBe(false);
      owner.inbound.finish();
      expect(owner.processed).toEqual(['one\n', 'last\n']);
      expect(owner.ended).toBe(1);
      expect(owner.inbound.done).toBe(true);
      expect(owner.inputsDone).toBe(0); // it has not left: nobody waits for its exit yet
      owner.receive('after eof\n');
      expect(owner.processed).toHaveLength(2);
    });

    it('frames what waited before EOF first, and keeps the order of what it holds', async () => {
      owner = new Owner(settingsWith({ maxPendingBytes: 512 }));
      const filter = gate();
      owner.asyncFor = (wire) => (wire === 'slow\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive(`slow\n${'x\n'.repeat(50)}`);
      owner.receive('tail');
      owner.inbound.finish();
      expect(owner.ended).toBe(0); // input still unframed
      filter.open();
      await settle();
      expect(owner.processed).toEqual(['slow\n', ...Array<string>(50).fill('x\n'), 'tail\n']);
      expect(owner.ended).toBe(1);
    });

    it('reports the input ended once all of it is framed, even while framed messages still wait', async () => {
      owner = new Owner(settingsWith());
      const filter = gate();
      owner.asyncFor = (wire) => (wire === 'slow\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive('slow\nnext\ntail');
      owner.inbound.finish();
      expect(owner.ended).toBe(1);
      expect(owner.inbound.done).toBe(false);
      filter.open();
      await settle();
      expect(owner.inbound.done).toBe(true);
    });

    it('depart() drops at once what waits for the rate limit', () => {
      owner = new Owner(settingsWith({ maxMessagesPerSecond: 1 })).rateLimited();
      owner.inbound.grant();
      owner.receive('1\n2\n3\n');
      expect(owner.held).toBeGreaterThan(0);
      owner.inbound.depart();
      expect(owner.held).toBe(0);
      expect(owner.inbound.done).toBe(true);
      expect(owner.inputsDone).toBe(1);
      jest.advanceTimersByTime(5000);
      expect(owner.processed).toEqual(['1\n']);
    });

    it('depart() keeps what waits for an async filter: it goes out, then the input is done', async () => {
      owner = new Owner(settingsWith());
      const filter = gate();
      owner.asyncFor = (wire) => (wire === 'slow\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive('slow\nnext\n');
      owner.inbound.depart();
      expect(owner.inbound.done).toBe(false);
      expect(owner.inputsDone).toBe(0);
      filter.open();
      await settle();
      expect(owner.processed).toEqual(['slow\n', 'next\n']);
      expect(owner.inbound.done).toBe(true);
      expect(owner.inputsDone).toBe(1);
    });

    it('depart() keeps what waits for admission, until it is granted', () => {
      owner = new Owner(settingsWith());
      owner.receive('early\n');
      owner.inbound.depart();
      expect(owner.inputsDone).toBe(0);
      owner.inbound.grant();
      expect(owner.processed).toEqual(['early\n']);
      expect(owner.inputsDone).toBe(1);
    });

    it('drops what reaches the rate limit after an async filter, once it departed', async () => {
      owner = new Owner(settingsWith({ maxMessagesPerSecond: 2 })).rateLimited();
      const filter = gate();
      owner.asyncFor = (wire) => (wire === '1\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive('1\n2\n3\n4\n');
      owner.inbound.depart();
      filter.open();
      await settle();
      expect(owner.processed).toEqual(['1\n', '2\n']); // 3 is over the rate: nobody waits for it
      expect(owner.inbound.done).toBe(true);
      expect(owner.inputsDone).toBeGreaterThan(0);
      expect(owner.held).toBe(0);
    });

    // Suspected bug (lib/inbound/inbound.ts, drain(): a drop() made inside the loop, by mayGo() for a departed
    // client or by the owner on rateExceeded, already calls check(), and drain() calls check() again at its end):
    // inputDone is reported twice. Session.inputFinished's `finished` flag hides it today.
    it('reports inputDone once when the rate limit drops the input of a departed client', async () => {
      owner = new Owner(settingsWith({ maxMessagesPerSecond: 2 })).rateLimited();
      const filter = gate();
      owner.asyncFor = (wire) => (wire === '1\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive('1\n2\n3\n4\n');
      owner.inbound.depart();
      filter.open();
      await settle();
      expect(owner.inputsDone).toBe(1);
    });

    it('drop() drops everything: held messages, unframed input, a partial line', () => {
      owner = new Owner(settingsWith({ maxPendingBytes: 512 }));
      owner.receive(`${'x\n'.repeat(100)}partial`);
      owner.receive('more');
      expect(owner.held).toBeGreaterThan(0);
      owner.inbound.drop();
      expect(owner.held).toBe(0);
      expect(owner.inbound.heldBytes).toBe(0);
      expect(owner.partials[owner.partials.length - 1]).toBe(false);
      expect(owner.inbound.done).toBe(true);
      expect(owner.inputsDone).toBe(1);
      owner.inbound.grant();
      owner.receive('after\n');
      expect(owner.processed).toEqual([]);
    });

    it('drop() while an async filter runs: done once it settles, and nothing after it goes out', async () => {
      owner = new Owner(settingsWith());
      const filter = gate();
      owner.asyncFor = (wire) => (wire === 'slow\n' ? filter.promise : undefined);
      owner.inbound.grant();
      owner.receive('slow\nnext\n');
      owner.inbound.drop();
      expect(owner.inbound.done).toBe(false);
      filter.open();
      await settle();
      expect(owner.processed).toEqual(['slow\n']);
      expect(owner.inbound.done).toBe(true);
      expect(owner.inputsDone).toBe(1);
    });
  });
});
