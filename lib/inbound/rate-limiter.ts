/** Per-client limits on what it may send, each refilled continuously up to one second's worth. */
export interface RateLimits {
  /** Messages per second; 0 is no limit. */
  readonly maxMessagesPerSecond: number;
  /** Bytes per second; 0 is no limit. */
  readonly maxBytesPerSecond: number;
}

/**
 * Two token buckets (messages and bytes) of one client. A message may run the byte bucket into debt, paid by
 * waiting afterwards, unless `strict` (the disconnect action) asks for the tokens up front.
 */
export class TokenBuckets {
  private messages: number;
  private bytes: number;
  private stamp: number;
  /** In a throttling episode: set by the first refusal, cleared once the buckets are full again. */
  throttled = false;

  constructor(limits: RateLimits, now: number) {
    this.messages = limits.maxMessagesPerSecond;
    this.bytes = limits.maxBytesPerSecond;
    this.stamp = now;
  }

  /**
   * Takes the tokens of one message of `size` bytes.
   * @returns 0 when it may go now, otherwise how many ms to wait before asking again
   */
  take(size: number, limits: RateLimits, now: number, strict: boolean): number {
    const { maxMessagesPerSecond: perMessage, maxBytesPerSecond: perByte } = limits;
    const elapsed = Math.max(0, now - this.stamp) / 1000;
    this.stamp = now;
    // A limit that is off (0) has no bucket: it neither refills nor runs into debt.
    if (perMessage > 0) this.messages = Math.min(perMessage, this.messages + elapsed * perMessage);
    if (perByte > 0) this.bytes = Math.min(perByte, this.bytes + elapsed * perByte);
    if ((perMessage === 0 || this.messages >= perMessage) && (perByte === 0 || this.bytes >= perByte)) {
      this.throttled = false;
    }
    const messagesShort = perMessage > 0 && this.messages < 1;
    const bytesShort = perByte > 0 && (strict ? this.bytes < size : this.bytes <= 0);
    if (!messagesShort && !bytesShort) {
      if (perMessage > 0) this.messages -= 1;
      if (perByte > 0) this.bytes -= size;
      return 0;
    }
    const seconds = Math.max(
      messagesShort ? (1 - this.messages) / perMessage : 0,
      bytesShort ? ((strict ? size : 1) - this.bytes) / perByte : 0,
    );
    return Math.max(1, Math.ceil(seconds * 1000));
  }
}
