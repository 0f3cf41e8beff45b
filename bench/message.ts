/**
 * The load generator's message format: a fixed-size text line.
 *
 *   byte  0       kind: '@' a measured message, '!' a warm-up message
 *   bytes 1-3     sender id        (3 digits of 6 bits)
 *   bytes 4-8     sequence number  (5 digits of 6 bits)
 *   bytes 9-16    send time, ns since the run's epoch (8 digits of 6 bits: 48 bits, 78 hours)
 *   byte  17      '|'
 *   bytes 18..    '.' padding up to the case's size
 *   last byte     '\n'
 *
 * A digit of 6 bits is the character 0x30 + value ('0'..'o'): never a newline, a space or a colon, so a
 * server that prefixes lines with `nick: ` can be checked on what follows the first `: `. Decoding is a
 * handful of subtractions, cheap enough for millions of lines per second per worker.
 */

export const KIND_DATA = 0x40; // '@'
export const KIND_WARM = 0x21; // '!'
export const SEPARATOR = 0x7c; // '|'
export const PAD = 0x2e; // '.'
export const NEWLINE = 0x0a;
export const DIGIT_BASE = 0x30;

export const SID_OFFSET = 1;
export const SEQ_OFFSET = 4;
export const TS_OFFSET = 9;
export const SEP_OFFSET = 17;
/** Bytes before the padding: the smallest message is one byte longer (the newline). */
export const HEADER_BYTES = 18;
export const MIN_MESSAGE_BYTES = HEADER_BYTES + 1;

export const MAX_SENDERS = 64 ** 3;

/** A message with the given sender id, padding and newline; sequence and time are filled by {@link stamp}. */
export function template(size: number, sid: number, kind: number = KIND_DATA): Buffer {
  if (size < MIN_MESSAGE_BYTES) throw new RangeError(`messages are at least ${MIN_MESSAGE_BYTES} bytes; got ${size}`);
  if (sid < 0 || sid >= MAX_SENDERS) throw new RangeError(`sender id out of range: ${sid}`);
  const buf = Buffer.alloc(size, PAD);
  buf[0] = kind;
  putDigits(buf, SID_OFFSET, 3, sid);
  putDigits(buf, SEQ_OFFSET, 5, 0);
  putDigits(buf, TS_OFFSET, 8, 0);
  buf[SEP_OFFSET] = SEPARATOR;
  buf[size - 1] = NEWLINE;
  return buf;
}

/** Writes `count` digits of `value` (most significant first) at `offset`. */
export function putDigits(buf: Uint8Array, offset: number, count: number, value: number): void {
  let v = value;
  for (let i = count - 1; i >= 0; i -= 1) {
    buf[offset + i] = DIGIT_BASE + (v % 64);
    v = Math.floor(v / 64);
  }
}

/** The 8 digits of a timestamp, computed once per batch and copied into every message of it. */
export function timeDigits(ns: number, out: Uint8Array): void {
  putDigits(out, 0, 8, ns);
}

/** Fills sequence number and send time of the message at `at` (its first byte). */
export function stamp(buf: Uint8Array, at: number, seq: number, time: Uint8Array): void {
  putDigits(buf, at + SEQ_OFFSET, 5, seq);
  const t = at + TS_OFFSET;
  buf[t] = time[0];
  buf[t + 1] = time[1];
  buf[t + 2] = time[2];
  buf[t + 3] = time[3];
  buf[t + 4] = time[4];
  buf[t + 5] = time[5];
  buf[t + 6] = time[6];
  buf[t + 7] = time[7];
}

/**
 * True when the message at `at` has the shape of a message (kind, separator, and the newline ending its
 * `size` bytes unless `newline` is false: a WebSocket text frame carries the line without it).
 */
export function wellFormed(buf: Uint8Array, at: number, size: number, newline = true): boolean {
  const kind = buf[at];
  return (
    (kind === KIND_DATA || kind === KIND_WARM) &&
    buf[at + SEP_OFFSET] === SEPARATOR &&
    (!newline || buf[at + size - 1] === NEWLINE)
  );
}

export function readSid(buf: Uint8Array, at: number): number {
  const s = at + SID_OFFSET;
  return (buf[s] - DIGIT_BASE) * 4096 + (buf[s + 1] - DIGIT_BASE) * 64 + (buf[s + 2] - DIGIT_BASE);
}

export function readSeq(buf: Uint8Array, at: number): number {
  const s = at + SEQ_OFFSET;
  return (
    (buf[s] - DIGIT_BASE) * 16777216 +
    (buf[s + 1] - DIGIT_BASE) * 262144 +
    (buf[s + 2] - DIGIT_BASE) * 4096 +
    (buf[s + 3] - DIGIT_BASE) * 64 +
    (buf[s + 4] - DIGIT_BASE)
  );
}

export function readTime(buf: Uint8Array, at: number): number {
  const t = at + TS_OFFSET;
  const high =
    (buf[t] - DIGIT_BASE) * 262144 +
    (buf[t + 1] - DIGIT_BASE) * 4096 +
    (buf[t + 2] - DIGIT_BASE) * 64 +
    (buf[t + 3] - DIGIT_BASE);
  const low =
    (buf[t + 4] - DIGIT_BASE) * 262144 +
    (buf[t + 5] - DIGIT_BASE) * 4096 +
    (buf[t + 6] - DIGIT_BASE) * 64 +
    (buf[t + 7] - DIGIT_BASE);
  return high * 16777216 + low;
}
