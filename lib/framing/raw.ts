import type { Decoder, Framing, MessageSink } from './framing';

/** Raw decoders hold nothing between chunks, so every client shares this one. */
const RAW_DECODER: Decoder = Object.freeze({
  bufferedBytes: 0,
  write(chunk: Buffer, sink: MessageSink): number {
    if (chunk.length > 0) sink.message(chunk, chunk);
    return chunk.length;
  },
  end(): void {},
});

/**
 * Raw framing, as Tcl: every chunk read is one message, with whatever boundaries TCP gave it. Binary-safe;
 * receivers get exactly the bytes sent.
 */
export const rawFraming: Framing = Object.freeze({
  name: 'raw',
  createDecoder: (): Decoder => RAW_DECODER,
  encode: (payload: Buffer): Buffer => payload,
});
