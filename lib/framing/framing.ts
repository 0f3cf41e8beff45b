import { invalidArgument } from '../errors';

/**
 * Framing turns a client's byte stream into messages, and a filter's result back into bytes. It is pure:
 * Buffers in, calls to a sink out, no sockets, so it is tested without a network.
 */

/** Receives what a decoder finds. */
export interface MessageSink {
  /**
   * One whole message. `payload` is what data filters see; `wire` is the bytes to broadcast when no filter
   * changes it (for `line` framing, the line with its terminator). Both may be views into the chunk read.
   * @returns false to ask the decoder to stop after this message (what the client sent waits, and the rest
   * of the chunk is given again later); anything else to go on
   */
  message(payload: Buffer, wire: Buffer): unknown;
  /** A message grew past `maxMessageBytes`; it is discarded, never delivered in part. */
  overflow(bytes: number): void;
}

/** A per-client, stateful splitter of incoming bytes. */
export interface Decoder {
  /**
   * Feeds a chunk and calls the sink for each whole message it completes.
   * @returns how many bytes of `chunk` it consumed, when it stopped early because `sink.message` returned
   * false; `undefined` (or the chunk's length) when it consumed all. A decoder that never stops early is
   * correct too: the client's held input may then pass `maxPendingBytes` by one chunk's messages.
   */
  write(chunk: Buffer, sink: MessageSink): number | void;
  /** The stream ended: delivers or drops what is left over. */
  end(sink: MessageSink): void;
  /** Payload bytes held while waiting for the rest of a message (0 between messages). */
  readonly bufferedBytes: number;
  /** Memory it holds for that, in bytes, when it differs from `bufferedBytes` (a buffer's capacity). */
  readonly heldBytes?: number;
}

/** Limits a framing honours. */
export interface DecoderLimits {
  /** Longest message, in bytes (for `line` framing, without its terminator). */
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

/** True for something shaped like a {@link Framing}. */
export function isFraming(value: unknown): value is Framing {
  if (typeof value !== 'object' || value === null) return false;
  const framing = value as Partial<Framing>;
  return typeof framing.createDecoder === 'function' && typeof framing.encode === 'function';
}

/** Validates a custom framing's name. */
export function assertFraming(value: unknown): Framing {
  if (!isFraming(value)) {
    throw invalidArgument(`framing must be 'raw', 'line' or a Framing object; got ${typeof value}`);
  }
  return value;
}
