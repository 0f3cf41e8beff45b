import fc from 'fast-check';
import { ENTRY_OVERHEAD, OutboundQueue, taken, type Taken } from '../../lib/fanout/outbound-queue';
import { slabOf, type Slab } from '../../lib/fanout/slab';
import { RecordingAccount } from '../helpers/fanout';

/** Messages named by their text, each of the given size (`a`, `bb`, ... when sizes are given). */
const messages = (...texts: string[]): Buffer[] => texts.map((text) => Buffer.from(text));

/** Releases what a take handed over, as a writer does once the write completed. */
function land(into: Taken, account: RecordingAccount): void {
  for (const slab of into.slabs) slab.release(account);
  if (into.owns > 0) account.release(into.owns);
}

const textOf = (into: Taken): string => Buffer.concat(into.views).toString();

describe('Slab', () => {
  it('uses a single message as it is, without a copy', () => {
    const only = Buffer.from('only');
    const slab = slabOf([only]);
    expect(slab.buffer).toBe(only);
    expect(slab.count).toBe(1);
    expect(slab.view(0, 1)).toBe(only);
  });

  it('copies several messages once, back to back, with their boundaries', () => {
    const slab = slabOf(messages('a', 'bb', 'ccc'));
    expect(slab.buffer.toString()).toBe('abbccc');
    expect(slab.offsets).toEqual([0, 1, 3, 6]);
    expect(slab.count).toBe(3);
    expect(slab.bytes(1, 3)).toBe(5);
    expect(slab.view(1, 2).toString()).toBe('bb');
    expect(slab.view(0, 3)).toBe(slab.buffer);
  });

  it('is counted in the account once, while any reference holds it', () => {
    const account = new RecordingAccount();
    const slab = slabOf(messages('a', 'bb'));
    slab.retain(account);
    slab.retain(account);
    expect(account.bytes).toBe(3);
    slab.release(account);
    expect(account.bytes).toBe(3);
    slab.release(account);
    expect(account.bytes).toBe(0);
    expect(account.holds).toEqual([3]);
  });
});

describe('OutboundQueue', () => {
  describe('pushing', () => {
    it('queues ranges of a slab and buffers of its own, counting bytes, entries and cost', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      const slab = slabOf(messages('a', 'bb', 'ccc'));
      queue.pushRange(slab, 0, 2);
      queue.pushBuffer(Buffer.from('own'));
      expect(queue.bytes).toBe(6);
      expect(queue.length).toBe(2);
      expect(queue.cost).toBe(6 + 2 * ENTRY_OVERHEAD);
    });

    it('ignores an empty range', () => {
      const queue = new OutboundQueue(new RecordingAccount());
      queue.pushRange(slabOf(messages('a', 'b')), 1, 1);
      expect(queue.length).toBe(0);
    });

    it('merges a range that continues the last one of the same slab into one entry', () => {
      const queue = new OutboundQueue(new RecordingAccount());
      const slab = slabOf(messages('a', 'b', 'c', 'd'));
      queue.pushRange(slab, 0, 2);
      queue.pushRange(slab, 2, 4);
      expect(queue.length).toBe(1);
      expect(queue.bytes).toBe(4);
    });

    it('does not merge ranges with a gap, of another slab, or with an own buffer between', () => {
      const queue = new OutboundQueue(new RecordingAccount());
      const slab = slabOf(messages('a', 'b', 'c', 'd'));
      queue.pushRange(slab, 0, 1);
      queue.pushRange(slab, 2, 3); // a gap: message 1 was not for this receiver
      queue.pushRange(slabOf(messages('x', 'y')), 0, 2);
      queue.pushRange(slab, 3, 4);
      expect(queue.length).toBe(4);
      const other = new OutboundQueue(new RecordingAccount());
      other.pushRange(slab, 0, 1);
      other.pushBuffer(Buffer.from('own'));
      other.pushRange(slab, 1, 2);
      expect(other.length).toBe(3);
    });

    it('counts a slab once in the account however many queues and entries hold it', () => {
      const account = new RecordingAccount();
      const slab = slabOf(messages('aaaa', 'bbbb', 'cccc'));
      const queues = [new OutboundQueue(account), new OutboundQueue(account), new OutboundQueue(account)];
      queues[0].pushRange(slab, 0, 3);
      queues[1].pushRange(slab, 0, 1);
      queues[1].pushRange(slab, 2, 3);
      queues[2].pushRange(slab, 1, 2);
      expect(account.bytes).toBe(12);
      expect(account.holds).toEqual([12]);
    });

    it('counts its own buffers in the account', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      queue.pushBuffer(Buffer.from('12345'));
      queue.pushBuffer(Buffer.from('67'));
      expect(account.bytes).toBe(7);
    });
  });

  describe('take', () => {
    it('takes whole messages only, however the bytes fall', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      const slab = slabOf(messages('aaaa', 'bbbb', 'cccc'));
      queue.pushRange(slab, 0, 3);
      const into = taken();
      queue.take(10, into); // 10 bytes: two messages of 4, not two and a half
      expect(textOf(into)).toBe('aaaabbbb');
      expect(into).toMatchObject({ bytes: 8, messages: 2 });
      expect(queue.bytes).toBe(4);
    });

    it('takes one message when it is larger than the most asked for', () => {
      const queue = new OutboundQueue(new RecordingAccount());
      queue.pushBuffer(Buffer.alloc(100, 0x61));
      queue.pushBuffer(Buffer.from('b'));
      const into = taken();
      queue.take(10, into);
      expect(into).toMatchObject({ bytes: 100, messages: 1 });
      const slabbed = new OutboundQueue(new RecordingAccount());
      slabbed.pushRange(slabOf([Buffer.alloc(100, 0x61), Buffer.from('b')]), 0, 2);
      const fromSlab = taken();
      slabbed.take(10, fromSlab);
      expect(fromSlab).toMatchObject({ bytes: 100, messages: 1 });
    });

    it('stops before a message that would pass the most asked for, once it took something', () => {
      const queue = new OutboundQueue(new RecordingAccount());
      queue.pushBuffer(Buffer.from('aaaa'));
      queue.pushRange(slabOf(messages('bbbbbbbb', 'c')), 0, 2);
      queue.pushBuffer(Buffer.from('dddddddd'));
      const into = taken();
      queue.take(10, into);
      expect(textOf(into)).toBe('aaaa');
      const next = taken();
      queue.take(10, next);
      expect(textOf(next)).toBe('bbbbbbbbc');
    });

    it('takes a range of a slab as one view into it, without a copy', () => {
      const slab = slabOf(messages('a', 'b', 'c'));
      const queue = new OutboundQueue(new RecordingAccount());
      queue.pushRange(slab, 1, 3);
      const into = taken();
      queue.take(100, into);
      expect(into.views).toHaveLength(1);
      expect(into.views[0].buffer).toBe(slab.buffer.buffer);
      expect(into.views[0].toString()).toBe('bc');
    });

    it('hands the taker a reference to each slab taken from, and the own bytes, to release once written', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      const slab = slabOf(messages('aaaa', 'bbbb'));
      queue.pushRange(slab, 0, 2);
      queue.pushBuffer(Buffer.from('own'));
      const into = taken();
      queue.take(100, into);
      expect(into.slabs).toEqual([slab]);
      expect(into.owns).toBe(3);
      expect(queue.length).toBe(0);
      expect(account.bytes).toBe(8 + 3); // in flight: still counted
      land(into, account);
      expect(account.bytes).toBe(0);
    });

    it('keeps the slab counted once when part of a range is taken and part stays queued', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      const slab = slabOf(messages('aaaa', 'bbbb', 'cccc'));
      queue.pushRange(slab, 0, 3);
      const into = taken();
      queue.take(4, into);
      expect(textOf(into)).toBe('aaaa');
      expect(account.bytes).toBe(12);
      land(into, account);
      expect(account.bytes).toBe(12); // the queue still holds the rest of it
      const rest = taken();
      queue.take(100, rest);
      expect(textOf(rest)).toBe('bbbbcccc');
      land(rest, account);
      expect(account.bytes).toBe(0);
    });

    it('releases a slab only when the last queue holding it lets go', () => {
      const account = new RecordingAccount();
      const slab = slabOf(messages('aaaa', 'bbbb'));
      const first = new OutboundQueue(account);
      const second = new OutboundQueue(account);
      first.pushRange(slab, 0, 2);
      second.pushRange(slab, 1, 2);
      const a = taken();
      first.take(100, a);
      land(a, account);
      expect(account.bytes).toBe(8);
      second.clear();
      expect(account.bytes).toBe(0);
    });

    it('gives every message once, whole and in order, whatever the take sizes', () => {
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.boolean(), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 5 })), {
            maxLength: 20,
          }),
          fc.array(fc.integer({ min: 1, max: 120 }), { minLength: 1, maxLength: 10 }),
          (pieces, maxes) => {
            const account = new RecordingAccount();
            const queue = new OutboundQueue(account);
            const expected: string[] = [];
            let label = 0;
            for (const [own, sizes] of pieces) {
              const bodies = sizes.map((size) => String.fromCharCode(97 + (label++ % 26)).repeat(size));
              if (own) for (const body of bodies) queue.pushBuffer(Buffer.from(body));
              else queue.pushRange(slabOf(bodies.map((body) => Buffer.from(body))), 0, bodies.length);
              expected.push(...bodies);
            }
            const got: string[] = [];
            let turn = 0;
            while (queue.length > 0) {
              const max = maxes[turn++ % maxes.length];
              const into = taken();
              queue.take(max, into);
              expect(into.messages).toBeGreaterThan(0);
              if (into.messages > 1) expect(into.bytes).toBeLessThanOrEqual(max);
              const text = textOf(into);
              expect(text).toHaveLength(into.bytes);
              // Cut the bytes back into the expected messages: they must fall on message boundaries.
              let at = 0;
              for (let i = 0; i < into.messages; i += 1) {
                const body = expected[got.length];
                expect(text.slice(at, at + body.length)).toBe(body);
                got.push(body);
                at += body.length;
              }
              expect(at).toBe(text.length);
              land(into, account);
            }
            expect(got).toEqual(expected);
            expect(queue.bytes).toBe(0);
            expect(account.bytes).toBe(0);
          },
        ),
      );
    });
  });

  describe('dropOldest', () => {
    it('drops whole messages, oldest first, until at least the cost asked for is freed', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      queue.pushBuffer(Buffer.from('1111'));
      queue.pushRange(slabOf(messages('2222', '3333', '4444')), 0, 3);
      expect(queue.dropOldest(4 + ENTRY_OVERHEAD + 1)).toBe(2); // the own buffer and its entry, then one more
      const rest = taken();
      queue.take(100, rest);
      expect(textOf(rest)).toBe('33334444');
      land(rest, account);
      expect(account.bytes).toBe(0);
    });

    it('counts the entry overhead only once an entry is gone', () => {
      const queue = new OutboundQueue(new RecordingAccount());
      queue.pushRange(slabOf(messages('aaaa', 'bbbb', 'cccc')), 0, 3);
      expect(queue.dropOldest(5)).toBe(2); // 4 bytes then 8: no entry freed, no overhead counted
      expect(queue.length).toBe(1);
      expect(queue.cost).toBe(4 + ENTRY_OVERHEAD);
    });

    it('releases what it drops from the account', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      queue.pushBuffer(Buffer.from('own'));
      queue.pushRange(slabOf(messages('ab', 'cd')), 0, 2);
      expect(queue.dropOldest(Number.POSITIVE_INFINITY)).toBe(3);
      expect(account.bytes).toBe(0);
      expect(queue.length).toBe(0);
      expect(queue.bytes).toBe(0);
    });

    it('drops nothing from an empty queue', () => {
      expect(new OutboundQueue(new RecordingAccount()).dropOldest(100)).toBe(0);
    });
  });

  describe('clear', () => {
    it('releases everything: slabs, a partly taken entry, own buffers', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      const slab = slabOf(messages('aaaa', 'bbbb'));
      queue.pushRange(slab, 0, 2);
      queue.pushBuffer(Buffer.from('own'));
      queue.pushRange(slabOf(messages('x', 'y')), 0, 2);
      const into = taken();
      queue.take(4, into);
      land(into, account);
      queue.clear();
      expect(account.bytes).toBe(0);
      expect(queue).toMatchObject({ length: 0, bytes: 0, cost: 0 });
    });
  });

  describe('compaction', () => {
    it('keeps the order of what is queued while it reclaims the slots already taken', () => {
      const account = new RecordingAccount();
      const queue = new OutboundQueue(account);
      const slabs: Slab[] = [];
      let next = 0;
      const push = (count: number): void => {
        for (let i = 0; i < count; i += 1) {
          // Alternate own buffers and ranges of fresh slabs, so that no two entries merge.
          const body = Buffer.from(`m${next++};`);
          if (i % 2 === 0) queue.pushBuffer(body);
          else {
            const slab = slabOf([body]);
            slabs.push(slab);
            queue.pushRange(slab, 0, 1);
          }
        }
      };
      push(200);
      let got = '';
      for (let round = 0; round < 150; round += 1) {
        const into = taken();
        queue.take(1, into); // one message each time: the head moves past 64 and over half
        got += textOf(into);
        land(into, account);
        if (round === 100) push(50);
      }
      while (queue.length > 0) {
        const into = taken();
        queue.take(1000, into);
        got += textOf(into);
        land(into, account);
      }
      const expected = Array.from({ length: 250 }, (_, i) => `m${i};`).join('');
      expect(got).toBe(expected);
      expect(account.bytes).toBe(0);
    });
  });
});
