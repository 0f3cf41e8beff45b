/**
 * The targets of the performance issue (#4) and of the WebSocket issue (#10), as ratios measured in one run;
 * and the bench's targets of the layered design (#9): rooms and a forward filter against the plain case,
 * mux against the corked loop, memory per idle connection, many clients held.
 */
import { parseCase } from './cases';
import { casesOf, find, type Summary } from './stats';

export interface TargetCheck {
  readonly target: string;
  readonly measured: number | null;
  /** e.g. `>= 5`. */
  readonly goal: string;
  /** null when a figure is missing (peer or case not run, or no clean run). */
  readonly pass: boolean | null;
  /** The issue whose own table shows it; absent: the table of the performance issue. */
  readonly issue?: number;
  /** Decimals of `measured` in the report (2 unless said). */
  readonly digits?: number;
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a != null && b != null && b > 0 ? a / b : null;
}

function check(target: string, measured: number | null, op: '>=' | '<=', bound: number): TargetCheck {
  const pass = measured === null ? null : op === '>=' ? measured >= bound : measured <= bound;
  return { target, measured, goal: `${op} ${bound}`, pass };
}

/** `references`: peers the `all` case is compared with besides naive and corked (external broadcasters). */
export function checkTargets(summaries: readonly Summary[], references: readonly string[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const all = casesOf(summaries);
  const cases = all.filter((name) => parseCase(name).net === 'tcp');
  const rate = (c: string, peer: string): number | null => find(summaries, c, peer)?.deliveriesPerS ?? null;
  for (const c of cases.filter((name) => summaries.some((s) => s.case === name && s.kind === 'all'))) {
    out.push(check(`${c}: deliveries/s mux / naive`, ratio(rate(c, 'mux'), rate(c, 'naive')), '>=', 5));
    out.push(check(`${c}: deliveries/s mux / corked`, ratio(rate(c, 'mux'), rate(c, 'corked')), '>=', 0.9));
    for (const ref of references) {
      out.push(check(`${c}: deliveries/s mux / ${ref}`, ratio(rate(c, 'mux'), rate(c, ref)), '>=', 1));
      out.push(
        check(
          `${c}: p50 latency mux / ${ref}`,
          ratio(find(summaries, c, 'mux')?.p50Us, find(summaries, c, ref)?.p50Us),
          '<=',
          2,
        ),
      );
    }
    out.push(
      check(
        `${c}: deliveries/s mux-line / mux (line framing vs raw)`,
        ratio(rate(c, 'mux-line'), rate(c, 'mux')),
        '>=',
        0.8,
      ),
    );
    out.push(
      check(
        `${c}: deliveries/s mux-nick / naive (nick filter vs naive raw)`,
        ratio(rate(c, 'mux-nick'), rate(c, 'naive')),
        '>=',
        3,
      ),
    );
  }
  for (const c of cases.filter((name) => summaries.some((s) => s.case === name && s.kind === 'dedicated'))) {
    out.push(check(`${c}: deliveries/s mux / naive`, ratio(rate(c, 'mux'), rate(c, 'naive')), '>=', 1));
    out.push(
      check(
        `${c}: server CPU s per M deliveries mux / corked`,
        ratio(find(summaries, c, 'mux')?.cpuPerM, find(summaries, c, 'corked')?.cpuPerM),
        '<=',
        1.1,
      ),
    );
  }
  for (const c of cases.filter((name) => summaries.some((s) => s.case === name && s.kind === 'paced'))) {
    out.push(
      check(
        `${c}: p99 latency mux / naive`,
        ratio(find(summaries, c, 'mux')?.p99Us, find(summaries, c, 'naive')?.p99Us),
        '<=',
        1,
      ),
    );
  }
  for (const c of cases.filter((name) => summaries.some((s) => s.case === name && s.kind === 'mem'))) {
    out.push(
      check(
        `${c}: bytes per idle connection mux / naive`,
        ratio(find(summaries, c, 'mux')?.bytesPerConn, find(summaries, c, 'naive')?.bytesPerConn),
        '<=',
        1,
      ),
    );
  }
  for (const c of cases.filter((name) => summaries.some((s) => s.case === name && s.kind === 'hold'))) {
    const mux = find(summaries, c, 'mux');
    const clean = mux === undefined || mux.runs === 0 ? null : (mux.runs - mux.bad) / mux.runs;
    out.push(check(`${c}: share of mux runs clean (all clients held, every broadcast delivered)`, clean, '>=', 1));
  }
  out.push(...clusterTargets(summaries, all));
  out.push(...webSocketTargets(summaries, all));
  out.push(...layerTargets(summaries, all));
  return out;
}

/**
 * Cluster cases (`cluster-redis:K:N:B`, `cluster-nats:K:N:B`), in one run: the K-node cluster at least half
 * the deliveries/s of one node with all the clients (`all:K*N:B` on mux), cross-node p50 within 3 ms, no
 * delivery lost, and on Redis at least 5 times socket.io with its Redis adapter on the same job. Paced cases
 * (`...:RATE`) check latency and loss only: the unpaced load saturates the machine, so its latency is queueing.
 */
function clusterTargets(summaries: readonly Summary[], cases: readonly string[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const rate = (c: string, peer: string): number | null => find(summaries, c, peer)?.deliveriesPerS ?? null;
  for (const c of cases) {
    const benchCase = parseCase(c);
    if (benchCase.kind !== 'cluster') continue;
    const single = `all:${benchCase.clients}:${benchCase.size}`;
    const mux = find(summaries, c, 'mux-cluster');
    const p50 = mux?.crossP50Us ?? null;
    out.push({
      ...check(`${c}: cross-node p50 latency mux-cluster, ms`, p50 === null ? null : p50 / 1000, '<=', 3),
      digits: 3,
    });
    out.push({
      ...check(`${c}: deliveries lost mux-cluster (all runs)`, mux?.lost ?? null, '<=', 0),
      digits: 0,
    });
    // Throughput targets on the unpaced load only: a paced one measures latency.
    if (benchCase.rate > 0) continue;
    out.push(
      check(
        `${c}: deliveries/s mux-cluster / mux in ${single} (one node)`,
        ratio(rate(c, 'mux-cluster'), rate(single, 'mux')),
        '>=',
        0.5,
      ),
    );
    if (benchCase.broker === 'redis')
      out.push(
        check(
          `${c}: deliveries/s mux-cluster / socketio-redis`,
          ratio(rate(c, 'mux-cluster'), rate(c, 'socketio-redis')),
          '>=',
          5,
        ),
      );
  }
  return out;
}

/** Issue #9's bound on server bytes per idle connection: no more than before the redesign (6,468 B). */
export const IDLE_BYTES_LIMIT = 6500;

/**
 * Issue #9 (in one run): `rooms:N:B:R` on mux-rooms and `fwd:N:B` on mux-forward each at least 0.7 of mux
 * in the plain `all:N:B`; mux at least the corked loop in `all:N:B`; bytes per idle connection no more than
 * today's; `hold:N` clean.
 */
function layerTargets(summaries: readonly Summary[], cases: readonly string[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const rate = (c: string, peer: string): number | null => find(summaries, c, peer)?.deliveriesPerS ?? null;
  const of9 = (t: TargetCheck, digits?: number): TargetCheck => ({
    ...t,
    issue: 9,
    ...(digits === undefined ? {} : { digits }),
  });
  for (const c of cases) {
    const benchCase = parseCase(c);
    if (benchCase.net !== 'tcp') continue;
    switch (benchCase.kind) {
      case 'all':
        out.push(of9(check(`${c}: deliveries/s mux / corked`, ratio(rate(c, 'mux'), rate(c, 'corked')), '>=', 1)));
        break;
      case 'rooms':
      case 'fwd': {
        const plain = `all:${benchCase.clients}:${benchCase.size}`;
        const peer = benchCase.kind === 'rooms' ? 'mux-rooms' : 'mux-forward';
        out.push(
          of9(
            check(`${c}: deliveries/s ${peer} / mux in ${plain}`, ratio(rate(c, peer), rate(plain, 'mux')), '>=', 0.7),
          ),
        );
        // A reference, not a target of the issue: the library against the room-aware corked loop on the same
        // load, with the bound of the plain case: fewer receivers per message cost every server, not only mux.
        if (benchCase.kind === 'rooms')
          out.push(
            of9(
              check(
                `${c}: deliveries/s mux-rooms / corked, same case (a reference, not a target of the issue)`,
                ratio(rate(c, 'mux-rooms'), rate(c, 'corked')),
                '>=',
                1,
              ),
            ),
          );
        break;
      }
      case 'mem':
        out.push(
          of9(
            check(
              `${c}: bytes per idle connection, mux`,
              find(summaries, c, 'mux')?.bytesPerConn ?? null,
              '<=',
              IDLE_BYTES_LIMIT,
            ),
            0,
          ),
        );
        break;
      case 'hold': {
        const mux = find(summaries, c, 'mux');
        const clean = mux === undefined || mux.runs === 0 ? null : (mux.runs - mux.bad) / mux.runs;
        out.push(of9(check(`${c}: share of mux runs clean`, clean, '>=', 1)));
        break;
      }
      default:
        break;
    }
  }
  return out;
}

/** Issue #10: 100 WebSocket clients all sending, against the naive ws loop, socket.io and mux's own TCP path. */
function webSocketTargets(summaries: readonly Summary[], cases: readonly string[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const rate = (c: string, peer: string): number | null => find(summaries, c, peer)?.deliveriesPerS ?? null;
  for (const c of cases) {
    const benchCase = parseCase(c);
    if (benchCase.net !== 'ws' || benchCase.kind !== 'all') continue;
    out.push(check(`${c}: deliveries/s mux-ws / ws-naive`, ratio(rate(c, 'mux-ws'), rate(c, 'ws-naive')), '>=', 5));
    out.push(check(`${c}: deliveries/s mux-ws / socketio`, ratio(rate(c, 'mux-ws'), rate(c, 'socketio')), '>=', 1));
    // The same load over TCP, line framing as mux-ws: `all:N:B`, if it ran.
    const tcp = `all:${benchCase.clients}:${benchCase.size}`;
    out.push(
      check(
        `${c}: server CPU s per M deliveries mux-ws / mux-line in ${tcp} (WebSocket vs TCP path)`,
        ratio(find(summaries, c, 'mux-ws')?.cpuPerM, find(summaries, tcp, 'mux-line')?.cpuPerM),
        '<=',
        2,
      ),
    );
  }
  return out;
}
