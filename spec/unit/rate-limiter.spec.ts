import { TokenBuckets, type RateLimits } from '../../lib/inbound/rate-limiter';

const limits = (maxMessagesPerSecond: number, maxBytesPerSecond: number): RateLimits => ({
  maxMessagesPerSecond,
  maxBytesPerSecond,
});

/** How many messages of `size` bytes go at `now`, one after the other, before the first refusal. */
function burst(buckets: TokenBuckets, rate: RateLimits, now: number, size = 1, strict = false): number {
  let count = 0;
  while (buckets.take(size, rate, now, strict) === 0) {
    count += 1;
    if (count > 1e6) throw new Error('never refused');
  }
  return count;
}

describe('TokenBuckets', () => {
  describe('messages per second', () => {
    it('lets one second worth of messages go at once, then one per 1/rate seconds', () => {
      const rate = limits(10, 0);
      const buckets = new TokenBuckets(rate, 0);
      expect(burst(buckets, rate, 0)).toBe(10);
      expect(buckets.take(1, rate, 99, false)).toBeGreaterThan(0);
      expect(buckets.take(1, rate, 100, false)).toBe(0);
      expect(buckets.take(1, rate, 100, false)).toBeGreaterThan(0);
      expect(buckets.take(1, rate, 200, false)).toBe(0);
    });

    it('never bursts more than one second worth, however long the client was quiet', () => {
      const rate = limits(10, 0);
      const buckets = new TokenBuckets(rate, 0);
      expect(burst(buckets, rate, 0)).toBe(10);
      expect(burst(buckets, rate, 60_000)).toBe(10);
    });

    it('says how long to wait for the next token', () => {
      const rate = limits(4, 0);
      const buckets = new TokenBuckets(rate, 0);
      burst(buckets, rate, 0);
      expect(buckets.take(1, rate, 0, false)).toBe(250);
      expect(buckets.take(1, rate, 100, false)).toBe(150);
    });

    it('never says to wait less than 1 ms', () => {
      const rate = limits(1_000_000, 0);
      const buckets = new TokenBuckets(rate, 0);
      burst(buckets, rate, 0);
      expect(buckets.take(1, rate, 0, false)).toBe(1);
    });
  });

  describe('bytes per second', () => {
    it('lets a message run the byte bucket into debt, paid by waiting afterwards', () => {
      const rate = limits(0, 1000);
      const buckets = new TokenBuckets(rate, 0);
      expect(buckets.take(5000, rate, 0, false)).toBe(0); // goes now: 4000 bytes of debt
      const wait = buckets.take(1, rate, 0, false);
      expect(wait).toBeGreaterThanOrEqual(4000);
      expect(wait).toBeLessThanOrEqual(4002);
      expect(buckets.take(1, rate, 3999, false)).toBeGreaterThan(0);
      expect(buckets.take(1, rate, wait, false)).toBe(0);
    });

    it('in strict mode asks for the tokens up front: a message goes only when the bucket holds its size', () => {
      const rate = limits(0, 1000);
      const buckets = new TokenBuckets(rate, 0);
      expect(buckets.take(600, rate, 0, true)).toBe(0); // 400 left
      expect(buckets.take(600, rate, 0, true)).toBe(200); // 200 more bytes: 200 ms
      expect(buckets.take(600, rate, 199, true)).toBeGreaterThan(0);
      expect(buckets.take(600, rate, 200, true)).toBe(0);
    });

    it('in strict mode never lets through a message larger than one second worth', () => {
      const rate = limits(0, 1000);
      const buckets = new TokenBuckets(rate, 0);
      expect(buckets.take(1001, rate, 0, true)).toBeGreaterThan(0);
      expect(buckets.take(1001, rate, 3_600_000, true)).toBeGreaterThan(0);
    });

    it('caps the byte bucket at one second worth too', () => {
      const rate = limits(0, 1000);
      const buckets = new TokenBuckets(rate, 0);
      expect(burst(buckets, rate, 100_000, 100, true)).toBe(10);
    });
  });

  describe('both limits', () => {
    it('waits for whichever bucket is shorter', () => {
      const rate = limits(10, 1000);
      const buckets = new TokenBuckets(rate, 0);
      expect(buckets.take(2000, rate, 0, false)).toBe(0); // 1000 bytes of debt, 9 messages left
      const wait = buckets.take(1, rate, 0, false);
      expect(wait).toBeGreaterThanOrEqual(1000); // the byte debt, not the 100 ms of a message token
      expect(wait).toBeLessThanOrEqual(1002);
    });

    it('reads the limits at every call, so a change applies at once', () => {
      const slow = new TokenBuckets(limits(1, 0), 0);
      const raised = new TokenBuckets(limits(1, 0), 0);
      expect(slow.take(1, limits(1, 0), 0, false)).toBe(0);
      expect(raised.take(1, limits(1, 0), 0, false)).toBe(0);
      expect(slow.take(1, limits(1, 0), 500, false)).toBeGreaterThan(0); // half a token
      expect(raised.take(1, limits(2, 0), 500, false)).toBe(0); // a whole one at the new rate
    });
  });

  describe('the throttled episode flag', () => {
    it('stays set while the buckets are not full, and is cleared once both are full again', () => {
      const rate = limits(10, 1000);
      const buckets = new TokenBuckets(rate, 0);
      burst(buckets, rate, 0, 10);
      buckets.throttled = true; // what the inbound half sets at the first refusal
      expect(buckets.take(10, rate, 500, false)).toBe(0);
      expect(buckets.throttled).toBe(true);
      expect(buckets.take(10, rate, 2000, false)).toBe(0); // full again before this message
      expect(buckets.throttled).toBe(false);
    });

    // Suspected bug: with a limit of 0 (off) on one bucket, that bucket goes below 0 at every message and is
    // capped at 0 on refill, so `this.messages >= perMessage && this.bytes >= perByte` is never true again and
    // the flag is never cleared: a later throttling episode is not reported.
    it('is cleared once the bucket is full again when only a message limit is set', () => {
      const rate = limits(10, 0);
      const buckets = new TokenBuckets(rate, 0);
      burst(buckets, rate, 0);
      buckets.throttled = true;
      buckets.take(1, rate, 10_000, false);
      expect(buckets.throttled).toBe(false);
    });

    it('is cleared once the bucket is full again when only a byte limit is set', () => {
      const rate = limits(0, 1000);
      const buckets = new TokenBuckets(rate, 0);
      burst(buckets, rate, 0, 100);
      buckets.throttled = true;
      buckets.take(1, rate, 10_000, false);
      expect(buckets.throttled).toBe(false);
    });
  });
});
