/** Raw run records and their medians per case and peer. */
import type { BenchCase } from './cases';
import type { GenResult } from './generator';

/** One line of results/latest.jsonl: a generator result with where it came from. */
export type RunRecord = GenResult & {
  readonly peer: string;
  readonly case: string;
  readonly kind: BenchCase['kind'];
  readonly rep: number;
  /** Generator exit status (0 clean, 1 a check failed, 2 setup failed), null if it was killed. */
  readonly rc: number | null;
  /** Server CPU seconds per million deliveries; -1 if unknown. */
  readonly cpu_s_per_m: number;
  /** mem case: server RSS before the clients connected, KiB; else -1. */
  readonly rss0_kb: number;
  /** mem case: (RSS with the clients - RSS before) / connections, bytes; else -1. */
  readonly bytes_per_conn: number;
};

export function median(values: readonly number[]): number | null {
  const xs = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/** Medians of one peer in one case. */
export interface Summary {
  readonly case: string;
  readonly kind: BenchCase['kind'];
  readonly peer: string;
  readonly runs: number;
  readonly bad: number;
  readonly deliveriesPerS: number | null;
  /** (max - min) / median of deliveries/s. */
  readonly spread: number | null;
  readonly mbPerS: number | null;
  readonly p50Us: number | null;
  readonly p99Us: number | null;
  readonly cpuPerM: number | null;
  /** Server CPU seconds per second of the run. */
  readonly serverCores: number | null;
  /** Generator CPU seconds per second of the run. */
  readonly genCores: number | null;
  readonly rss0Kb: number | null;
  readonly rssKb: number | null;
  readonly bytesPerConn: number | null;
  readonly setupS: number | null;
  /** A cluster case: latency of deliveries from a sender on another node, and on the receiver's own node. */
  readonly crossP50Us: number | null;
  readonly crossP99Us: number | null;
  readonly sameP50Us: number | null;
  readonly sameP99Us: number | null;
  /** Expected deliveries not received, summed over every run (clean or not); null if no run measured any. */
  readonly lost: number | null;
}

export function summarize(records: readonly RunRecord[]): Summary[] {
  const groups = new Map<string, RunRecord[]>();
  for (const r of records) {
    const key = `${r.case}\u0000${r.peer}`;
    const list = groups.get(key);
    if (list === undefined) groups.set(key, [r]);
    else list.push(r);
  }
  const out: Summary[] = [];
  for (const runs of groups.values()) {
    const good = runs.filter((r) => r.ok);
    // Figures come from clean runs only; a peer with no clean run shows none.
    const pick = (f: (r: RunRecord) => number, valid: (x: number) => boolean = (x) => x >= 0): number | null =>
      median(good.map(f).filter(valid));
    const rates = good.map((r) => r.deliveries_per_s).filter((x) => x > 0);
    const m = median(rates);
    out.push({
      case: runs[0].case,
      kind: runs[0].kind,
      peer: runs[0].peer,
      runs: runs.length,
      bad: runs.length - good.length,
      deliveriesPerS: m,
      spread: m !== null && m > 0 && rates.length > 1 ? (Math.max(...rates) - Math.min(...rates)) / m : null,
      mbPerS: pick(
        (r) => r.mb_per_s,
        (x) => x > 0,
      ),
      p50Us: pick(
        (r) => r.lat_p50_us,
        (x) => x > 0,
      ),
      p99Us: pick(
        (r) => r.lat_p99_us,
        (x) => x > 0,
      ),
      cpuPerM: pick((r) => r.cpu_s_per_m),
      serverCores: pick((r) => (r.elapsed_s > 0 && r.server_cpu_s >= 0 ? r.server_cpu_s / r.elapsed_s : -1)),
      genCores: pick((r) => (r.elapsed_s > 0 ? r.gen_cpu_s / r.elapsed_s : -1)),
      rss0Kb: pick((r) => r.rss0_kb),
      rssKb: pick((r) => r.server_rss_kb),
      bytesPerConn: pick((r) => r.bytes_per_conn),
      setupS: pick((r) => r.setup_s),
      crossP50Us: pick((r) => r.lat_cross_p50_us),
      crossP99Us: pick((r) => r.lat_cross_p99_us),
      sameP50Us: pick((r) => r.lat_same_p50_us),
      sameP99Us: pick((r) => r.lat_same_p99_us),
      lost: runs.some((r) => r.deliveries_expected > 0)
        ? runs.reduce((sum, r) => sum + (r.deliveries_expected > 0 ? r.lost : 0), 0)
        : null,
    });
  }
  return out;
}

/** The cases of `summaries`, in the order they first appear. */
export function casesOf(summaries: readonly Summary[]): string[] {
  return [...new Set(summaries.map((s) => s.case))];
}

export function find(summaries: readonly Summary[], caseName: string, peer: string): Summary | undefined {
  return summaries.find((s) => s.case === caseName && s.peer === peer);
}
