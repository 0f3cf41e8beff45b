import { isUtf8 } from 'node:buffer';
import type { Decoder, DecoderLimits, MessageSink } from './framing';

/** WebSocket opcodes of data frames. */
export const OPCODE_TEXT = 0x1;
export const OPCODE_BINARY = 0x2;

const NEWLINE = 0x0a;
const CR = 0x0d;

/** Bytes of a server frame's header (unmasked, FIN set) for a payload of `length` bytes. */
function headerLength(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

/** Writes one unmasked, final frame of `payload` into `out` at `at`; returns where it ends. */
function writeFrame(out: Buffer, at: number, opcode: number, payload: Buffer, start: number, end: number): number {
  const length = end - start;
  out[at] = 0x80 | opcode;
  if (length < 126) {
    out[at + 1] = length;
    at += 2;
  } else if (length < 65536) {
    out[at + 1] = 126;
    out.writeUInt16BE(length, at + 2);
    at += 4;
  } else {
    out[at + 1] = 127;
    out.writeUInt32BE(Math.floor(length / 2 ** 32), at + 2);
    out.writeUInt32BE(length >>> 0, at + 6);
    at += 10;
  }
  payload.copy(out, at, start, end);
  return at + length;
}

/** One unmasked, final frame carrying `payload` (RFC 6455 §5.2): what a server sends. Pure. */
export function frame(opcode: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(headerLength(payload.length) + payload.length);
  writeFrame(out, 0, opcode, payload, 0, payload.length);
  return out;
}

/** Text as a browser may take it: valid UTF-8 as it is, otherwise with each bad sequence replaced by U+FFFD. */
export function validText(payload: Buffer): Buffer {
  return isUtf8(payload) ? payload : Buffer.from(payload.toString('utf8'));
}

/**
 * One broadcast message as WebSocket frames, built once per message per turn.
 *
 * In line framing each line (`\n`-terminated, a `\r` before it dropped; a last line without one too) becomes
 * one text frame without its terminator; bytes that are not valid UTF-8 (from a TCP client) are checked once
 * here and sent with U+FFFD in place of each bad sequence, since a browser closes the connection on invalid
 * text. Otherwise the message is one binary frame, its bytes as they are.
 */
export function messageFrames(message: Buffer, lines: boolean): Buffer {
  if (!lines) return frame(OPCODE_BINARY, message);
  // The common case, one line with its newline: one frame, one allocation.
  const first = message.indexOf(NEWLINE);
  if (first === -1 || first === message.length - 1) {
    let end = first === -1 ? message.length : first;
    if (end > 0 && message[end - 1] === CR) end -= 1;
    const text = end === message.length ? message : message.subarray(0, end);
    return frame(OPCODE_TEXT, validText(text));
  }
  const frames: Buffer[] = [];
  let start = 0;
  while (start < message.length) {
    const newline = message.indexOf(NEWLINE, start);
    const stop = newline === -1 ? message.length : newline;
    let end = stop;
    if (end > start && message[end - 1] === CR) end -= 1;
    frames.push(frame(OPCODE_TEXT, validText(message.subarray(start, end))));
    start = stop + 1;
  }
  return frames.length === 1 ? frames[0] : Buffer.concat(frames);
}

const NEWLINE_BUFFER = Buffer.from('\n');

/** No limit: the transport (ws's `maxPayload`) bounds messages. */
const UNLIMITED: DecoderLimits = { maxMessageBytes: Number.POSITIVE_INFINITY };

/**
 * The decoder of a WebSocket client: each WebSocket message is one multiplexer message. In line framing a
 * message is a line (a trailing `\r?\n` dropped, so stream receivers get it with a plain `\n`); a message
 * with newlines inside is split into its lines. Otherwise the message's bytes are the message. A message (in
 * line framing, a line without its terminator) longer than `maxMessageBytes` goes to `sink.overflow`
 * instead: the transport's own bound lets a line's terminator through, and `config()` may lower the limit.
 */
export class MessageDecoder implements Decoder {
  readonly bufferedBytes = 0;

  /** @param limits read at every message, so a change to the limit applies at once */
  constructor(
    private readonly lines: boolean,
    private readonly limits: DecoderLimits = UNLIMITED,
  ) {}

  write(chunk: Buffer, sink: MessageSink): number {
    const max = this.limits.maxMessageBytes;
    if (!this.lines) {
      if (chunk.length > max) sink.overflow(chunk.length);
      else sink.message(chunk, chunk);
      return chunk.length;
    }
    if (chunk.length === 0) {
      sink.message(chunk, NEWLINE_BUFFER); // an empty message is an empty line
      return 0;
    }
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      const stop = newline === -1 ? chunk.length : newline;
      let end = stop;
      if (end > start && chunk[end - 1] === CR) end -= 1;
      const payload = chunk.subarray(start, end);
      if (payload.length > max) {
        sink.overflow(payload.length);
        start = stop + 1;
        continue;
      }
      const wire =
        newline === -1 || end !== stop ? Buffer.concat([payload, NEWLINE_BUFFER]) : chunk.subarray(start, stop + 1);
      start = stop + 1;
      if (sink.message(wire.subarray(0, payload.length), wire) === false) return Math.min(start, chunk.length);
    }
    return chunk.length;
  }

  end(): void {}
}

/** One frame found by {@link readFrames}: its opcode and its payload (a view of the bytes given). */
export interface FrameView {
  readonly opcode: number;
  readonly payload: Buffer;
}

/**
 * Reads back the frames this module built (unmasked, final, back to back) from `bytes`: what a connection
 * needs to hand our pre-built frames, one message at a time, to a library that frames messages itself (when
 * permessage-deflate is on). Throws on bytes that do not end at a frame boundary. Pure.
 */
export function readFrames(bytes: Buffer, into: FrameView[] = []): FrameView[] {
  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 2) throw new RangeError(`a WebSocket frame header cut short at ${at}`);
    let length = bytes[at + 1] & 0x7f;
    let header = 2;
    if (length === 126) {
      length = bytes.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      length = bytes.readUInt32BE(at + 2) * 2 ** 32 + bytes.readUInt32BE(at + 6);
      header = 10;
    }
    const end = at + header + length;
    if (end > bytes.length) throw new RangeError(`a WebSocket frame of ${length} bytes at ${at} runs past the end`);
    into.push({ opcode: bytes[at] & 0x0f, payload: bytes.subarray(at + header, end) });
    at = end;
  }
  return into;
}
