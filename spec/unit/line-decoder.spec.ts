import fc from 'fast-check';
import { LineDecoder } from '../../lib/framing/line';
import type { MessageSink } from '../../lib/framing/framing';

/** First capacity of the decoder's partial-line buffer (lib/framing/line.ts). */
const FIRST_CAPACITY = 256;

/**
 * A sink that records lines (copied: they may be views) and answers false (stop) for the messages whose
 * index, counted from 0 over the sink's life, is in `stopAt`.
 */
class StoppingSink implements MessageSink {
  readonly lines: string[] = [];
  readonly wires: string[] = [];
  readonly overflows: number[] = [];

  constructor(private readonly stopAt: ReadonlySet<number> = new Set()) {}

  message(payload: Buffer, wire: Buffer): boolean {
    const index = this.lines.length;
    this.lines.push(payload.toString('latin1'));
    this.wires.push(wire.toString('latin1'));
    return !this.stopAt.has(index);
  }

  overflow(bytes: number): void {
    this.overflows.push(bytes);
  }
}

/** Feeds `chunk` as a reader does: whatever the decoder did not consume is given again, until all is. */
function feedAll(decoder: LineDecoder, chunk: Buffer, sink: MessageSink): number {
  let rest = chunk;
  let stops = 0;
  for (;;) {
    const consumed = decoder.write(rest, sink);
    expect(consumed).toBeGreaterThanOrEqual(0);
    expect(consumed).toBeLessThanOrEqual(rest.length);
    if (consumed === rest.length) return stops;
    stops += 1;
    rest = rest.subarray(consumed);
  }
}

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('LineDecoder', () => {
  describe('stopping when the sink returns false', () => {
    it('stops right after that message and returns the bytes it consumed', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 100 });
      const sink = new StoppingSink(new Set([0]));
      expect(decoder.write(latin1('one\ntwo\nthree\n'), sink)).toBe(4);
      expect(sink.lines).toEqual(['one']);
    });

    it('returns the whole length when it was never told to stop', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 100 });
      expect(decoder.write(latin1('one\ntwo\npart'), new StoppingSink())).toBe(12);
    });

    it('resumes from the rest it is given again, losing and repeating nothing', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 100 });
      const sink = new StoppingSink(new Set([0, 1]));
      const chunk = latin1('one\ntwo\r\nthree\nfou');
      const first = decoder.write(chunk, sink);
      const second = decoder.write(chunk.subarray(first), sink);
      expect(first + second).toBe(9);
      expect(decoder.write(chunk.subarray(first + second), sink)).toBe(chunk.length - first - second);
      decoder.write(latin1('r\n'), sink);
      expect(sink.lines).toEqual(['one', 'two', 'three', 'four']);
      expect(sink.wires).toEqual(['one\n', 'two\r\n', 'three\n', 'four\n']);
    });

    it('holds nothing of the rest when it stops: the rest is the caller to give again', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 100 });
      const sink = new StoppingSink(new Set([0]));
      expect(decoder.write(latin1('one\npartial'), sink)).toBe(4);
      expect(decoder.bufferedBytes).toBe(0);
      expect(decoder.heldBytes).toBe(0);
    });

    it('counts only the bytes of this chunk when the message that stops completes a held partial line', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 100 });
      const sink = new StoppingSink(new Set([0]));
      expect(decoder.write(latin1('hel'), sink)).toBe(3);
      expect(decoder.write(latin1('lo\nnext\n'), sink)).toBe(3);
      expect(sink.lines).toEqual(['hello']);
      expect(decoder.bufferedBytes).toBe(0);
      decoder.write(latin1('next\n'), sink);
      expect(sink.lines).toEqual(['hello', 'next']);
    });

    it('does not stop at an over-long line, which is no message', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 3 });
      const sink = new StoppingSink(new Set([0]));
      expect(decoder.write(latin1('toolong\nok\nafter\n'), sink)).toBe(11);
      expect(sink.overflows).toEqual([8]);
      expect(sink.lines).toEqual(['ok']);
    });

    it('yields the same lines for any chunking and any stops, when what was not consumed is given again', () => {
      fc.assert(
        fc.property(
          fc.array(fc.constantFrom('a', 'b', '\n', '\r', 'é'), { maxLength: 120 }),
          fc.array(fc.nat(200), { maxLength: 8 }),
          fc.array(fc.nat(40), { maxLength: 10 }),
          (characters, cuts, stops) => {
            const bytes = latin1(characters.join(''));
            const reference = new StoppingSink();
            new LineDecoder({ maxMessageBytes: 1000 }).write(bytes, reference);
            const decoder = new LineDecoder({ maxMessageBytes: 1000 });
            const sink = new StoppingSink(new Set(stops));
            const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
            let start = 0;
            for (const point of [...points, bytes.length]) {
              feedAll(decoder, bytes.subarray(start, point), sink);
              start = point;
            }
            expect(sink.wires).toEqual(reference.wires);
            expect(sink.lines).toEqual(reference.lines);
          },
        ),
      );
    });
  });

  describe('memory held for a partial line', () => {
    it('holds a partial line in one growing buffer, at most twice its bytes plus the first capacity, one byte per write', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 1 << 20 });
      const sink = new StoppingSink();
      const byte = latin1('x');
      for (let i = 1; i <= 100_000; i += 1) {
        decoder.write(byte, sink);
        expect(decoder.bufferedBytes).toBe(i);
        if (decoder.heldBytes > 2 * decoder.bufferedBytes + FIRST_CAPACITY) {
          throw new Error(`holds ${decoder.heldBytes} bytes for a partial line of ${i}`);
        }
      }
      decoder.write(latin1('\n'), sink);
      expect(sink.lines).toHaveLength(1);
      expect(sink.lines[0]).toHaveLength(100_000);
      expect(decoder.heldBytes).toBe(0);
    });

    it('keeps that bound whatever the packet sizes', () => {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 60 }), (sizes) => {
          const decoder = new LineDecoder({ maxMessageBytes: 1 << 20 });
          const sink = new StoppingSink();
          let total = 0;
          for (const size of sizes) {
            decoder.write(Buffer.alloc(size, 0x61), sink);
            total += size;
            expect(decoder.bufferedBytes).toBe(total);
            expect(decoder.heldBytes).toBeLessThanOrEqual(2 * decoder.bufferedBytes + FIRST_CAPACITY);
            expect(decoder.heldBytes).toBeGreaterThanOrEqual(decoder.bufferedBytes);
          }
          decoder.write(latin1('\n'), sink);
          expect(sink.lines).toEqual(['a'.repeat(total)]);
        }),
      );
    });

    it('holds nothing between messages, after end(), and after an over-long line is discarded', () => {
      const decoder = new LineDecoder({ maxMessageBytes: 10 });
      const sink = new StoppingSink();
      decoder.write(latin1('abc'), sink);
      expect(decoder.heldBytes).toBeGreaterThan(0);
      decoder.write(latin1('\n'), sink);
      expect(decoder.heldBytes).toBe(0);
      decoder.write(latin1('xyz'), sink);
      decoder.end(sink);
      expect(decoder.heldBytes).toBe(0);
      decoder.write(latin1('0123456789abcdef'), sink);
      expect(decoder.heldBytes).toBe(0);
      expect(sink.overflows).toEqual([16]);
    });
  });
});
