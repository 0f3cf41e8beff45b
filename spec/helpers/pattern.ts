/**
 * A deterministic byte stream that receivers can check byte for byte at memcmp speed: block `k` is a
 * pseudo-random template whose first 8 bytes are replaced by `k` (big-endian), so a lost, repeated or
 * reordered byte is found at the exact offset where it happens.
 */
export class PatternStream {
  readonly template: Buffer;

  constructor(readonly blockBytes = 64 * 1024, seed = 0x9e3779b9) {
    if (blockBytes < 16) throw new RangeError('blockBytes must be at least 16');
    this.template = Buffer.allocUnsafe(blockBytes);
    let state = seed >>> 0 || 1;
    for (let i = 0; i < blockBytes; i += 1) {
      // xorshift32
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      this.template[i] = state & 0xff;
    }
  }

  /** Block `index` of the stream (a new Buffer). */
  block(index: number): Buffer {
    const block = Buffer.from(this.template);
    block.writeBigUInt64BE(BigInt(index), 0);
    return block;
  }

  /** The stream's bytes from `offset` to `offset + length` (for small checks). */
  slice(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / this.blockBytes);
      const inner = position % this.blockBytes;
      const take = Math.min(length - done, this.blockBytes - inner);
      const header = Buffer.alloc(8);
      header.writeBigUInt64BE(BigInt(index), 0);
      for (let i = 0; i < take; i += 1) {
        const at = inner + i;
        out[done + i] = at < 8 ? header[at] : this.template[at];
      }
      done += take;
    }
    return out;
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
