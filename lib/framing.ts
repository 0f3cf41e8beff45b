import { invalidArgument } from './errors';

/**
 * Framing turns a client's byte stream into messages, and a filter's result back into bytes.
 * Everything here is pure: Buffers in, calls to a sink out, no sockets.
 */

/** Receives what a decoder finds. */
export interface MessageSink {
  /**
   * One whole message. `payload` is what data filters see; `wire` is the bytes to broadcast when no filter
   * changes it (for `line` framing, the line with its terminator). Both may be views into the chunk read.
   */
  message(payload: Buffer, wire: Buffer): void;
  /** A message grew past `maxMessageBytes`; it is discarded, never delivered in part. */
  overflow(bytes: number): void;
}

/** A per-client, stateful splitter of incoming bytes. */
export interface Decoder {
  /** Feeds a chunk; calls the sink for each whole message it completes. */
  write(chunk: Buffer, sink: MessageSink): void;
  /** The stream ended: delivers or drops what is left over. */
  end(sink: MessageSink): void;
  /** Bytes held while waiting for the rest of a message. */
  readonly bufferedBytes: number;
}

/** Limits a framing honours. */
export interface DecoderLimits {
  /** Longest message, in bytes. */
  readonly maxMessageBytes: number;
}

/** A way of cutting a byte stream into messages: built in (`raw`, `line`) or your own. */
export interface Framing {
  /** A short name, for logs and the CLI. */
  readonly name: string;
  /** Creates the decoder of one client. */
  createDecoder(limits: DecoderLimits): Decoder;
  /** Turns a data filter's result into the bytes sent to receivers (`line` appends the newline). */
  encode(payload: Buffer): Buffer;
}

const NEWLINE = 0x0a;
const CR = 0x0d;

class RawDecoder implements Decoder {
  readonly bufferedBytes = 0;

  write(chunk: Buffer, sink: MessageSink): void {
    if (chunk.length > 0) sink.message(chunk, chunk);
  }

  end(): void {}
}

/**
 * Raw framing, as Tcl: every chunk read is one message, with whatever boundaries TCP gave it. Binary-safe;
 * receivers get exactly the bytes sent.
 */
export const rawFraming: Framing = Object.freeze({
  name: 'raw',
  createDecoder: (): Decoder => new RawDecoder(),
  encode: (payload: Buffer): Buffer => payload,
});

/**
 * Splits on `\n`. Payloads exclude the terminator (and a `\r` before it); `wire` is the line as it arrived,
 * terminator included, so an unfiltered line is forwarded byte for byte without a copy.
 */
export class LineDecoder implements Decoder {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private discarding = false;

  /** @param limits read at every message, so a change to the limit applies at once */
  constructor(private readonly limits: DecoderLimits) {}

  get bufferedBytes(): number {
    return this.partialBytes;
  }

  write(chunk: Buffer, sink: MessageSink): void {
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    while (newline !== -1) {
      const end = newline + 1;
      if (this.discarding) {
        this.discarding = false;
      } else if (this.partialBytes === 0) {
        const payloadBytes = newline - start - (newline > start && chunk[newline - 1] === CR ? 1 : 0);
        if (payloadBytes > this.limits.maxMessageBytes) {
          sink.overflow(end - start);
        } else {
          const wire = chunk.subarray(start, end);
          sink.message(payloadOf(wire), wire);
        }
      } else {
        this.completePartial(chunk.subarray(start, end), sink);
      }
      start = end;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) this.hold(chunk.subarray(start), sink);
  }

  end(sink: MessageSink): void {
    if (this.partialBytes > 0 && !this.discarding) {
      const line = Buffer.concat(this.partial, this.partialBytes);
      sink.message(line, Buffer.concat([line, NEWLINE_BUFFER]));
    }
    this.reset();
  }

  private completePartial(tail: Buffer, sink: MessageSink): void {
    const beforeNewline = tail.length >= 2 ? tail[tail.length - 2] : this.lastHeldByte();
    const payloadBytes = this.partialBytes + tail.length - 1 - (beforeNewline === CR ? 1 : 0);
    if (payloadBytes > this.limits.maxMessageBytes) {
      sink.overflow(this.partialBytes + tail.length);
    } else {
      this.partial.push(tail);
      const wire = Buffer.concat(this.partial, this.partialBytes + tail.length);
      sink.message(payloadOf(wire), wire);
    }
    this.reset();
  }

  private hold(rest: Buffer, sink: MessageSink): void {
    if (this.discarding) return;
    // A trailing \r may be the start of a \r\n terminator: it does not count yet.
    const limit = this.limits.maxMessageBytes + (rest[rest.length - 1] === CR ? 1 : 0);
    if (this.partialBytes + rest.length > limit) {
      sink.overflow(this.partialBytes + rest.length);
      this.reset();
      this.discarding = true;
      return;
    }
    // Copy: the chunk may be a view into a large read buffer that would otherwise stay alive.
    this.partial.push(Buffer.from(rest));
    this.partialBytes += rest.length;
  }

  private lastHeldByte(): number | undefined {
    const last = this.partial[this.partial.length - 1];
    return last === undefined ? undefined : last[last.length - 1];
  }

  private reset(): void {
    this.partial = [];
    this.partialBytes = 0;
  }
}

const NEWLINE_BUFFER = Buffer.from('\n');

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

/** Resolves the `framing` option. */
export function resolveFraming(framing: 'raw' | 'line' | Framing | undefined): Framing {
  if (framing === undefined || framing === 'raw') return rawFraming;
  if (framing === 'line') return lineFraming;
  if (
    typeof framing === 'object' &&
    framing !== null &&
    typeof framing.createDecoder === 'function' &&
    typeof framing.encode === 'function'
  ) {
    return framing;
  }
  throw invalidArgument(`framing must be 'raw', 'line' or a Framing object; got ${typeof framing}`);
}
