import fc from 'fast-check';
import { LineDecoder, lineFraming, rawFraming, type Decoder, type MessageSink } from '../lib';

/** A sink that records what a decoder delivers, copying (payload and wire may be views into the chunk). */
class RecordingSink implements MessageSink {
  readonly payloads: Buffer[] = [];
  readonly wires: Buffer[] = [];
  readonly overflows: number[] = [];

  message(payload: Buffer, wire: Buffer): void {
    this.payloads.push(Buffer.from(payload));
    this.wires.push(Buffer.from(wire));
  }

  overflow(bytes: number): void {
    this.overflows.push(bytes);
  }

  get lines(): string[] {
    return this.payloads.map((payload) => payload.toString('latin1'));
  }

  get wireText(): string[] {
    return this.wires.map((wire) => wire.toString('latin1'));
  }
}

function feed(decoder: Decoder, chunks: Array<string | Buffer>, end = false): RecordingSink {
  const sink = new RecordingSink();
  for (const chunk of chunks) decoder.write(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk, sink);
  if (end) decoder.end(sink);
  return sink;
}

const line = (maxMessageBytes = 1024 * 1024): LineDecoder => new LineDecoder({ maxMessageBytes });

/** Cuts `bytes` at the given offsets (taken modulo its length), in order. */
function chunked(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => (bytes.length === 0 ? 0 : cut % (bytes.length + 1))))].sort(
    (a, b) => a - b,
  );
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

/**
 * True when a line's content is one byte over `max` only because of the `\r` of a `\r\n`: whether such a
 * line fits is the subject of its own test, so the properties leave it out.
 */
function hasCrlfLineAtLimit(bytes: Buffer, max: number): boolean {
  return bytes
    .toString('latin1')
    .split('\n')
    .some((part) => part.length === max + 1 && part.endsWith('\r'));
}

/** The reference model of line framing: what a stream must yield, whatever its chunking. */
function model(bytes: Buffer, max: number): { lines: string[]; wires: string[]; overflows: number } {
  const text = bytes.toString('latin1');
  const parts = text.split('\n');
  const trailing = parts.pop() ?? '';
  const lines: string[] = [];
  const wires: string[] = [];
  let overflows = 0;
  for (const part of parts) {
    if (part.length > max) {
      overflows += 1;
      continue;
    }
    lines.push(part.endsWith('\r') ? part.slice(0, -1) : part);
    wires.push(`${part}\n`);
  }
  if (trailing.length > max) overflows += 1;
  else if (trailing.length > 0) {
    lines.push(trailing);
    wires.push(`${trailing}\n`);
  }
  return { lines, wires, overflows };
}

/** Bytes rich in the characters that matter to line framing. */
const streamBytes = fc
  .array(
    fc.oneof(fc.constant(0x0a), fc.constant(0x0d), fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x61, 0x62)),
    { maxLength: 300 },
  )
  .map((values) => Buffer.from(values));

describe('rawFraming', () => {
  it('is named raw', () => {
    expect(rawFraming.name).toBe('raw');
  });

  it('delivers every chunk as one message, as it arrived, payload and wire the same bytes', () => {
    const chunk = Buffer.from([0, 1, 2, 0x0a, 0xff, 0x0d]);
    const decoder = rawFraming.createDecoder({ maxMessageBytes: 2 });
    const seen: Array<[Buffer, Buffer]> = [];
    decoder.write(chunk, { message: (payload, wire) => seen.push([payload, wire]), overflow: () => undefined });
    expect(seen).toHaveLength(1);
    expect(seen[0][0]).toBe(chunk);
    expect(seen[0][1]).toBe(chunk);
  });

  it('ignores empty chunks and holds nothing back', () => {
    const decoder = rawFraming.createDecoder({ maxMessageBytes: 16 });
    const sink = feed(decoder, ['', 'abc', ''], true);
    expect(sink.lines).toEqual(['abc']);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('encodes a filter result as it is', () => {
    const payload = Buffer.from('no newline added');
    expect(rawFraming.encode(payload)).toBe(payload);
  });
});

describe('lineFraming', () => {
  it('is named line and creates line decoders', () => {
    expect(lineFraming.name).toBe('line');
    expect(lineFraming.createDecoder({ maxMessageBytes: 10 })).toBeInstanceOf(LineDecoder);
  });

  it('encodes a filter result by appending a newline', () => {
    expect(lineFraming.encode(Buffer.from('hello')).toString()).toBe('hello\n');
    expect(lineFraming.encode(Buffer.alloc(0)).toString()).toBe('\n');
  });

  it('does not append a second newline to a result that ends with one', () => {
    const payload = Buffer.from('hello\n');
    expect(lineFraming.encode(payload).toString()).toBe('hello\n');
  });
});

describe('LineDecoder', () => {
  it('splits a chunk into lines, payloads without the terminator and wires with it', () => {
    const sink = feed(line(), ['one\ntwo\nthree\n']);
    expect(sink.lines).toEqual(['one', 'two', 'three']);
    expect(sink.wireText).toEqual(['one\n', 'two\n', 'three\n']);
  });

  it('strips \\r\\n from the payload but keeps it on the wire', () => {
    const sink = feed(line(), ['dos\r\nunix\n']);
    expect(sink.lines).toEqual(['dos', 'unix']);
    expect(sink.wireText).toEqual(['dos\r\n', 'unix\n']);
  });

  it('strips a \\r\\n split across two chunks', () => {
    const sink = feed(line(), ['dos\r', '\n']);
    expect(sink.lines).toEqual(['dos']);
    expect(sink.wireText).toEqual(['dos\r\n']);
  });

  it('keeps a \\r that is not before the newline', () => {
    const sink = feed(line(), ['a\rb\n']);
    expect(sink.lines).toEqual(['a\rb']);
  });

  it('delivers empty lines', () => {
    const sink = feed(line(), ['\n\r\n']);
    expect(sink.lines).toEqual(['', '']);
    expect(sink.wireText).toEqual(['\n', '\r\n']);
  });

  it('joins a line split across chunk boundaries', () => {
    const sink = feed(line(), ['he', 'll', 'o\nwor', 'ld\n']);
    expect(sink.lines).toEqual(['hello', 'world']);
    expect(sink.wireText).toEqual(['hello\n', 'world\n']);
  });

  it('holds a partial line and counts it in bufferedBytes until its newline arrives', () => {
    const decoder = line();
    const sink = new RecordingSink();
    decoder.write(Buffer.from('done\npart'), sink);
    expect(sink.lines).toEqual(['done']);
    expect(decoder.bufferedBytes).toBe(4);
    decoder.write(Buffer.from('ial\n'), sink);
    expect(sink.lines).toEqual(['done', 'partial']);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('is binary-safe: any byte but the newline is part of the line', () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((i) => i !== 0x0a));
    const sink = feed(line(), [bytes.subarray(0, 100), bytes.subarray(100), Buffer.from('\n')]);
    expect(sink.payloads).toHaveLength(1);
    expect(sink.payloads[0].equals(bytes)).toBe(true);
  });

  it('does not keep a reference to the chunk a partial line came from', () => {
    const decoder = line();
    const sink = new RecordingSink();
    const chunk = Buffer.from('abc');
    decoder.write(chunk, sink);
    chunk.fill(0x7a);
    decoder.write(Buffer.from('\n'), sink);
    expect(sink.lines).toEqual(['abc']);
  });

  describe('end()', () => {
    it('delivers a trailing partial line with a newline added on the wire', () => {
      const sink = feed(line(), ['first\nlast'], true);
      expect(sink.lines).toEqual(['first', 'last']);
      expect(sink.wireText).toEqual(['first\n', 'last\n']);
    });

    it('delivers nothing when no partial line is held', () => {
      const sink = feed(line(), ['complete\n'], true);
      expect(sink.lines).toEqual(['complete']);
    });

    it('leaves the decoder empty', () => {
      const decoder = line();
      feed(decoder, ['partial'], true);
      expect(decoder.bufferedBytes).toBe(0);
    });
  });

  describe('maxMessageBytes', () => {
    it('delivers a line of exactly maxMessageBytes', () => {
      const sink = feed(line(5), ['12345\n']);
      expect(sink.lines).toEqual(['12345']);
      expect(sink.overflows).toEqual([]);
    });

    it('measures the limit on the payload, so a \\r\\n line of exactly maxMessageBytes is delivered', () => {
      const sink = feed(line(5), ['12345\r\n']);
      expect(sink.overflows).toEqual([]);
      expect(sink.lines).toEqual(['12345']);
    });

    it('reports an over-long line in one chunk through overflow() and never delivers it', () => {
      const sink = feed(line(5), ['123456\nok\n']);
      expect(sink.overflows).toHaveLength(1);
      expect(sink.overflows[0]).toBeGreaterThan(5);
      expect(sink.lines).toEqual(['ok']);
    });

    it('reports an over-long line spread over chunks once, and never delivers any part of it', () => {
      const sink = feed(line(5), ['abc', 'defgh', 'ijk', 'lmn\n', 'ok\n']);
      expect(sink.overflows).toHaveLength(1);
      expect(sink.lines).toEqual(['ok']);
    });

    it('reports a line that becomes too long only when its newline arrives', () => {
      const sink = feed(line(5), ['abcde', 'f\n', 'ok\n']);
      expect(sink.overflows).toHaveLength(1);
      expect(sink.lines).toEqual(['ok']);
    });

    it('discards the rest of an over-long line until the next newline, then goes on', () => {
      const decoder = line(4);
      const sink = new RecordingSink();
      decoder.write(Buffer.from('aaaaaa'), sink);
      expect(sink.overflows).toHaveLength(1);
      decoder.write(Buffer.from('aaaaaaaaaaaaaaaaaaaa'), sink);
      decoder.write(Buffer.from('aaaa'), sink);
      expect(decoder.bufferedBytes).toBe(0);
      decoder.write(Buffer.from('aa\nnext\n'), sink);
      expect(sink.overflows).toHaveLength(1);
      expect(sink.lines).toEqual(['next']);
    });

    it('does not deliver the discarded rest of an over-long line at end()', () => {
      const sink = feed(line(4), ['toolongline', 'more'], true);
      expect(sink.overflows).toHaveLength(1);
      expect(sink.lines).toEqual([]);
    });

    it('reads the limit at every message, so a change applies at once', () => {
      const limits = { maxMessageBytes: 3 };
      const decoder = new LineDecoder(limits);
      const sink = new RecordingSink();
      decoder.write(Buffer.from('abcdef\n'), sink);
      limits.maxMessageBytes = 10;
      decoder.write(Buffer.from('abcdef\n'), sink);
      expect(sink.overflows).toHaveLength(1);
      expect(sink.lines).toEqual(['abcdef']);
    });
  });

  describe('properties', () => {
    it('yields the same lines, wires and overflows for any chunking of a byte stream', () => {
      fc.assert(
        fc.property(
          streamBytes,
          fc.array(fc.nat(), { maxLength: 20 }),
          fc.integer({ min: 1, max: 40 }),
          (bytes, cuts, max) => {
            fc.pre(!hasCrlfLineAtLimit(bytes, max));
            const expected = model(bytes, max);
            const whole = feed(line(max), [bytes], true);
            const pieces = feed(line(max), chunked(bytes, cuts), true);
            expect(pieces.lines).toEqual(expected.lines);
            expect(pieces.wireText).toEqual(expected.wires);
            expect(pieces.overflows).toHaveLength(expected.overflows);
            expect(whole.lines).toEqual(pieces.lines);
            expect(whole.wireText).toEqual(pieces.wireText);
          },
        ),
        { numRuns: 500 },
      );
    });

    it('forwards a stream without over-long lines byte for byte on the wire', () => {
      fc.assert(
        fc.property(streamBytes, fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
          const sink = feed(line(1024), chunked(bytes, cuts));
          const complete = bytes.subarray(0, bytes.lastIndexOf(0x0a) + 1);
          expect(Buffer.concat(sink.wires).equals(complete)).toBe(true);
        }),
        { numRuns: 300 },
      );
    });

    it('passes raw chunks through unchanged, in order', () => {
      fc.assert(
        fc.property(streamBytes, fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
          const chunks = chunked(bytes, cuts);
          const sink = feed(rawFraming.createDecoder({ maxMessageBytes: 1 }), chunks, true);
          expect(Buffer.concat(sink.payloads).equals(bytes)).toBe(true);
          expect(sink.payloads).toHaveLength(chunks.filter((chunk) => chunk.length > 0).length);
        }),
        { numRuns: 200 },
      );
    });
  });
});
