import type * as net from 'node:net';

/** Deterministic pseudo-random bytes (xorshift32), so that a failure can be replayed. */
export function randomBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 1) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = state & 0xff;
  }
  return out;
}

/**
 * A deterministic byte stream that receivers can check byte for byte at memcmp speed: block `k` is a
 * pseudo-random template whose first 8 bytes are replaced by `k` (big-endian), so a lost, repeated or
 * reordered byte is found at the exact offset where it happens.
 */
export class PatternStream {
  readonly template: Buffer;

  constructor(
    readonly blockBytes = 64 * 1024,
    seed = 0x9e3779b9,
  ) {
    if (blockBytes < 16) throw new RangeError('blockBytes must be at least 16');
    this.template = randomBytes(blockBytes, seed);
  }

  /** Block `index` of the stream (a new Buffer). */
  block(index: number): Buffer {
    const block = Buffer.from(this.template);
    block.writeBigUInt64BE(BigInt(index), 0);
    return block;
  }
}

/** Checks a received stream against a {@link PatternStream} as chunks arrive. */
export class PatternVerifier {
  /** Bytes checked so far (= bytes received while no error was found). */
  offset = 0;
  /** Where checking stopped: the start of the first segment (at most a block, within one chunk) that differs; null while all is well. */
  errorAt: number | null = null;
  private readonly header = Buffer.alloc(8);

  constructor(private readonly pattern: PatternStream) {}

  /** Checks the next chunk; returns false once a mismatch was seen. */
  push(chunk: Buffer): boolean {
    if (this.errorAt !== null) return false;
    const { blockBytes, template } = this.pattern;
    let at = 0;
    while (at < chunk.length) {
      const index = Math.floor(this.offset / blockBytes);
      const inner = this.offset % blockBytes;
      const take = Math.min(chunk.length - at, blockBytes - inner);
      let good = true;
      if (inner < 8) {
        this.header.writeBigUInt64BE(BigInt(index), 0);
        const headerTake = Math.min(take, 8 - inner);
        good = chunk.compare(this.header, inner, inner + headerTake, at, at + headerTake) === 0;
        if (good && take > headerTake) {
          good = chunk.compare(template, 8, inner + take, at + headerTake, at + take) === 0;
        }
      } else {
        good = chunk.compare(template, inner, inner + take, at, at + take) === 0;
      }
      if (!good) {
        this.errorAt = this.offset;
        return false;
      }
      at += take;
      this.offset += take;
    }
    return true;
  }
}

/**
 * Writes `total` bytes of `pattern` to `socket`, honouring backpressure, until done or the socket is
 * destroyed; `onSent` hears the running count after each write. Resolves with the bytes written.
 */
export async function sendPattern(
  socket: net.Socket,
  pattern: PatternStream,
  total: number,
  onSent?: (sent: number) => void,
): Promise<number> {
  let sent = 0;
  for (let index = 0; sent < total && !socket.destroyed; index += 1) {
    const block = pattern.block(index);
    const piece = total - sent < block.length ? block.subarray(0, total - sent) : block;
    sent += piece.length;
    onSent?.(sent);
    if (!socket.write(piece)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
  }
  return sent;
}
