import type { Decoder, DecoderLimits, Framing, MessageSink } from './framing';

const NEWLINE = 0x0a;
const CR = 0x0d;
const NEWLINE_BUFFER = Buffer.from('\n');
/** First capacity of a partial line's buffer; it doubles as the line grows. */
const FIRST_CAPACITY = 256;

/**
 * Splits on `\n`. Payloads exclude the terminator (and a `\r` before it); `wire` is the line as it arrived,
 * terminator included, so an unfiltered line is forwarded byte for byte without a copy. A partial line is
 * held in one growing buffer: its memory is at most twice its bytes, however it was cut into packets.
 */
export class LineDecoder implements Decoder {
  private partial: Buffer | null = null;
  private length = 0;
  private discarding = false;

  /** @param limits read at every message, so a change to the limit applies at once */
  constructor(private readonly limits: DecoderLimits) {}

  get bufferedBytes(): number {
    return this.length;
  }

  get heldBytes(): number {
    return this.partial === null ? 0 : this.partial.length;
  }

  write(chunk: Buffer, sink: MessageSink): number {
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    while (newline !== -1) {
      const end = newline + 1;
      let go = true;
      if (this.discarding) {
        this.discarding = false;
      } else if (this.length === 0) {
        const payloadBytes = newline - start - (newline > start && chunk[newline - 1] === CR ? 1 : 0);
        if (payloadBytes > this.limits.maxMessageBytes) {
          sink.overflow(end - start);
        } else {
          const wire = chunk.subarray(start, end);
          go = sink.message(payloadOf(wire), wire) !== false;
        }
      } else {
        go = this.completePartial(chunk, start, end, sink);
      }
      start = end;
      if (!go) return start;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) this.hold(chunk, start, sink);
    return chunk.length;
  }

  end(sink: MessageSink): void {
    const partial = this.partial;
    const length = this.length;
    const complete = length > 0 && !this.discarding;
    this.reset();
    this.discarding = false;
    if (complete && partial !== null) {
      // A last line without its newline is delivered with one added.
      const wire = Buffer.concat([partial.subarray(0, length), NEWLINE_BUFFER], length + 1);
      sink.message(wire.subarray(0, length), wire);
    }
  }

  private completePartial(chunk: Buffer, start: number, end: number, sink: MessageSink): boolean {
    const tailLength = end - start;
    const beforeNewline = tailLength >= 2 ? chunk[end - 2] : this.partial?.[this.length - 1];
    const payloadBytes = this.length + tailLength - 1 - (beforeNewline === CR ? 1 : 0);
    if (payloadBytes > this.limits.maxMessageBytes) {
      sink.overflow(this.length + tailLength);
      this.reset();
      return true;
    }
    this.append(chunk, start, end);
    // The buffer goes with the message (it may be queued): the next partial line starts a new one.
    const wire = (this.partial as Buffer).subarray(0, this.length);
    this.reset();
    return sink.message(payloadOf(wire), wire) !== false;
  }

  private hold(chunk: Buffer, start: number, sink: MessageSink): void {
    if (this.discarding) return;
    const restLength = chunk.length - start;
    // A trailing \r may be the start of a \r\n terminator: it does not count yet.
    const limit = this.limits.maxMessageBytes + (chunk[chunk.length - 1] === CR ? 1 : 0);
    if (this.length + restLength > limit) {
      sink.overflow(this.length + restLength);
      this.reset();
      this.discarding = true;
      return;
    }
    // Copied: the chunk may be a view into a large read buffer that would otherwise stay alive.
    this.append(chunk, start, chunk.length);
  }

  private append(chunk: Buffer, start: number, end: number): void {
    const needed = this.length + end - start;
    let partial = this.partial;
    if (partial === null || partial.length < needed) {
      const grown = Buffer.allocUnsafe(Math.max(needed, FIRST_CAPACITY, partial === null ? 0 : partial.length * 2));
      if (partial !== null) partial.copy(grown, 0, 0, this.length);
      this.partial = partial = grown;
    }
    chunk.copy(partial, this.length, start, end);
    this.length = needed;
  }

  private reset(): void {
    this.partial = null;
    this.length = 0;
  }
}

function payloadOf(wire: Buffer): Buffer {
  let end = wire.length - 1;
  if (end > 0 && wire[end - 1] === CR) end -= 1;
  return end === wire.length ? wire : wire.subarray(0, end);
}

/** Line framing: whole lines reach filters and receivers; a line longer than `maxMessageBytes` never does. */
export const lineFraming: Framing = Object.freeze({
  name: 'line',
  createDecoder: (limits: DecoderLimits): Decoder => new LineDecoder(limits),
  encode: (payload: Buffer): Buffer => {
    if (payload.length > 0 && payload[payload.length - 1] === NEWLINE) return payload;
    return Buffer.concat([payload, NEWLINE_BUFFER], payload.length + 1);
  },
});
