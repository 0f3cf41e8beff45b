/**
 * Latency histogram in microseconds: 1 µs buckets up to 100 ms, then 1 ms buckets up to 100 s.
 * Workers fill one each; the coordinator adds them up.
 */
const LINEAR_US = 100_000;
const COARSE_BUCKETS = 100_000;
export const HISTOGRAM_BUCKETS = LINEAR_US + COARSE_BUCKETS;

export class Histogram {
  readonly counts: Uint32Array;
  maxUs = 0;

  constructor(counts?: Uint32Array) {
    this.counts = counts ?? new Uint32Array(HISTOGRAM_BUCKETS);
  }

  record(ns: number): void {
    const us = ns > 0 ? Math.floor(ns / 1000) : 0;
    if (us > this.maxUs) this.maxUs = us;
    if (us < LINEAR_US) this.counts[us] += 1;
    else this.counts[LINEAR_US + Math.min(COARSE_BUCKETS - 1, Math.floor((us - LINEAR_US) / 1000))] += 1;
  }

  add(other: Histogram): void {
    for (let i = 0; i < HISTOGRAM_BUCKETS; i += 1) this.counts[i] += other.counts[i];
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs;
  }

  get total(): number {
    let sum = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i += 1) sum += this.counts[i];
    return sum;
  }

  /** The smallest latency (µs) that at least `fraction` of the samples do not exceed; 0 without samples. */
  percentile(fraction: number): number {
    const total = this.total;
    if (total === 0) return 0;
    const want = Math.max(1, Math.ceil(fraction * total));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i += 1) {
      seen += this.counts[i];
      if (seen >= want) return i < LINEAR_US ? i : LINEAR_US + (i - LINEAR_US + 1) * 1000;
    }
    return this.maxUs;
  }
}
