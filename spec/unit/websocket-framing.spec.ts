import type { MessageSink } from '../../lib/framing/framing';
import {
  frame,
  MessageDecoder,
  messageFrames,
  OPCODE_BINARY,
  OPCODE_TEXT,
  validText,
} from '../../lib/framing/websocket';
import { parseFrames } from '../helpers/ws-frames';

/** The text frames of `bytes`, as strings (and a check that they are all final, unmasked text frames). */
function texts(bytes: Buffer): string[] {
  return parseFrames(bytes).map((parsed) => {
    expect(parsed).toMatchObject({ fin: true, opcode: OPCODE_TEXT, masked: false });
    return parsed.payload.toString('utf8');
  });
}

class RecordingSink implements MessageSink {
  readonly payloads: string[] = [];
  readonly wires: Buffer[] = [];

  constructor(private readonly stopAt: ReadonlySet<number> = new Set()) {}

  message(payload: Buffer, wire: Buffer): boolean {
    const index = this.payloads.length;
    this.payloads.push(payload.toString('latin1'));
    this.wires.push(Buffer.from(wire));
    return !this.stopAt.has(index);
  }

  overflow(): void {
    throw new Error('a WebSocket decoder never overflows');
  }
}

describe('frame', () => {
  it.each([
    [0, 2],
    [125, 2],
    [126, 4],
    [65535, 4],
    [65536, 10],
    [70000, 10],
  ])('frames a payload of %i bytes with a header of %i bytes', (size, headerLength) => {
    const payload = Buffer.alloc(size, 0x61);
    const bytes = frame(OPCODE_BINARY, payload);
    expect(bytes).toHaveLength(headerLength + size);
    const [parsed, ...rest] = parseFrames(bytes);
    expect(rest).toHaveLength(0);
    expect(parsed).toMatchObject({ fin: true, opcode: OPCODE_BINARY, masked: false, headerLength });
    expect(parsed.payload.equals(payload)).toBe(true);
    expect(bytes[0] & 0x70).toBe(0); // no reserved bits (no extension)
  });

  it('uses the shortest length encoding at each boundary', () => {
    expect(frame(OPCODE_TEXT, Buffer.alloc(125))[1]).toBe(125);
    expect(frame(OPCODE_TEXT, Buffer.alloc(126))[1]).toBe(126);
    expect(frame(OPCODE_TEXT, Buffer.alloc(65535)).readUInt16BE(2)).toBe(65535);
    const large = frame(OPCODE_TEXT, Buffer.alloc(65536));
    expect(large[1]).toBe(127);
    expect(large.readBigUInt64BE(2)).toBe(65536n);
  });

  it('sets the opcode it is given', () => {
    expect(parseFrames(frame(OPCODE_TEXT, Buffer.from('hi')))[0].opcode).toBe(OPCODE_TEXT);
    expect(parseFrames(frame(OPCODE_BINARY, Buffer.from('hi')))[0].opcode).toBe(OPCODE_BINARY);
  });
});

describe('validText', () => {
  it('returns valid UTF-8 as it is, the same Buffer', () => {
    const valid = Buffer.from('héllo €');
    expect(validText(valid)).toBe(valid);
  });

  it('replaces each invalid sequence with U+FFFD', () => {
    expect(validText(Buffer.from([0x61, 0xff, 0x62, 0xc3])).toString('utf8')).toBe('a\uFFFDb\uFFFD');
  });
});

describe('messageFrames', () => {
  describe('in line framing', () => {
    it('makes one text frame of one line, without its newline', () => {
      expect(texts(messageFrames(Buffer.from('hello\n'), true))).toEqual(['hello']);
    });

    it('drops a \\r before the newline', () => {
      expect(texts(messageFrames(Buffer.from('hello\r\n'), true))).toEqual(['hello']);
    });

    it('frames a message without a last newline as it is', () => {
      expect(texts(messageFrames(Buffer.from('hello'), true))).toEqual(['hello']);
    });

    it('makes one text frame per line of a message with several', () => {
      expect(texts(messageFrames(Buffer.from('one\ntwo\r\nthree\n'), true))).toEqual(['one', 'two', 'three']);
    });

    it('keeps a last line that has no newline, and empty lines', () => {
      expect(texts(messageFrames(Buffer.from('one\n\ntwo'), true))).toEqual(['one', '', 'two']);
      expect(texts(messageFrames(Buffer.from('\n'), true))).toEqual(['']);
      expect(texts(messageFrames(Buffer.from('\r\n'), true))).toEqual(['']);
    });

    it('keeps a \\r that is not before a newline', () => {
      expect(texts(messageFrames(Buffer.from('a\rb\n'), true))).toEqual(['a\rb']);
    });

    it('replaces invalid UTF-8 with U+FFFD, in one line and in several', () => {
      const one = Buffer.concat([Buffer.from('bad '), Buffer.from([0xff, 0xfe]), Buffer.from('\n')]);
      expect(texts(messageFrames(one, true))).toEqual(['bad \uFFFD\uFFFD']);
      const several = Buffer.concat([Buffer.from('ok\n'), Buffer.from([0x80]), Buffer.from('\n')]);
      expect(texts(messageFrames(several, true))).toEqual(['ok', '\uFFFD']);
    });

    it('leaves valid UTF-8 byte for byte', () => {
      const line = Buffer.from('héllo € 𝄞');
      const [parsed] = parseFrames(messageFrames(Buffer.concat([line, Buffer.from('\n')]), true));
      expect(parsed.payload.equals(line)).toBe(true);
    });
  });

  describe('in raw framing', () => {
    it('makes one binary frame of the bytes as they are, newlines and invalid UTF-8 included', () => {
      const message = Buffer.from([0x61, 0x0a, 0xff, 0x0d, 0x0a, 0x62]);
      const frames = parseFrames(messageFrames(message, false));
      expect(frames).toHaveLength(1);
      expect(frames[0]).toMatchObject({ fin: true, opcode: OPCODE_BINARY, masked: false });
      expect(frames[0].payload.equals(message)).toBe(true);
    });
  });
});

describe('MessageDecoder', () => {
  describe('in line framing', () => {
    it('makes each WebSocket message a line whose wire ends with a plain newline', () => {
      const sink = new RecordingSink();
      const decoder = new MessageDecoder(true);
      decoder.write(Buffer.from('hello'), sink);
      decoder.write(Buffer.from('crlf\r\n'), sink);
      decoder.write(Buffer.from('lf\n'), sink);
      expect(sink.payloads).toEqual(['hello', 'crlf', 'lf']);
      expect(sink.wires.map(String)).toEqual(['hello\n', 'crlf\n', 'lf\n']);
    });

    it('splits a message with newlines inside into its lines', () => {
      const sink = new RecordingSink();
      new MessageDecoder(true).write(Buffer.from('one\ntwo\r\n\nthree'), sink);
      expect(sink.payloads).toEqual(['one', 'two', '', 'three']);
      expect(sink.wires.map(String)).toEqual(['one\n', 'two\n', '\n', 'three\n']);
    });

    it('gives the payload as the wire without its newline', () => {
      const decoder = new MessageDecoder(true);
      decoder.write(Buffer.from('a\r\nb'), {
        message: (payload, wire) => {
          expect(wire.subarray(0, payload.length).equals(payload)).toBe(true);
          expect(wire).toHaveLength(payload.length + 1);
          expect(wire[wire.length - 1]).toBe(0x0a);
        },
        overflow: () => undefined,
      });
    });

    it('stops after a message when the sink returns false, and returns the bytes consumed', () => {
      const sink = new RecordingSink(new Set([0]));
      const decoder = new MessageDecoder(true);
      const message = Buffer.from('one\ntwo\nthree');
      const consumed = decoder.write(message, sink);
      expect(consumed).toBe(4);
      expect(sink.payloads).toEqual(['one']);
      expect(decoder.write(message.subarray(consumed), sink)).toBe(message.length - consumed);
      expect(sink.payloads).toEqual(['one', 'two', 'three']);
    });

    it('returns the whole length when it stops at the last line', () => {
      const sink = new RecordingSink(new Set([1]));
      expect(new MessageDecoder(true).write(Buffer.from('one\ntwo'), sink)).toBe(7);
    });

    it('holds nothing between messages', () => {
      const decoder = new MessageDecoder(true);
      decoder.write(Buffer.from('partial without newline'), new RecordingSink());
      expect(decoder.bufferedBytes).toBe(0);
    });
  });

  describe('in raw framing', () => {
    it('makes each WebSocket message one message, payload and wire the very bytes', () => {
      const message = Buffer.from('a\nb\r\n');
      const seen: Buffer[] = [];
      const consumed = new MessageDecoder(false).write(message, {
        message: (payload, wire) => {
          seen.push(payload, wire);
        },
        overflow: () => undefined,
      });
      expect(consumed).toBe(message.length);
      expect(seen).toEqual([message, message]);
      expect(seen[0]).toBe(message);
    });
  });
});
