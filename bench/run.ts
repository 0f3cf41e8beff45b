/**
 * `npm run bench`: runs every case against every peer found on the machine, peers interleaved and the
 * order rotated each repetition, and writes bench/results/latest.{md,svg,jsonl}.
 *
 * Environment: BENCH_REPS (3), BENCH_DURATION seconds per run (3), BENCH_CASES (see cases.ts),
 * BENCH_PEERS (all), BENCH_WORKERS generator threads (2), BENCH_PORT_BASE (21000), BENCH_HOLD_REPS (1),
 * BENCH_SLOW_PEERS=1 (run cases with many connections on slow accepters too: ncat),
 * BENCH_EXTRA_PEERS ("name=command args {port};..." more line-protocol servers to compare with),
 * BENCH_WS_CLIENT (own: the generator's own WebSocket codec; library: the ws and socket.io-client packages).
 */
import { createWriteStream, mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { exited, installCleanup, spawnTracked } from './children';
import {
  type BenchCase,
  DEFAULT_CASES,
  SLOW_ACCEPT_CONNECTIONS,
  connectionsOf,
  generatorArgs,
  isThroughput,
  parseCases,
  serves,
} from './cases';
import { type WsClientKind, defaultWorkers } from './gen-shared';
import { type GenResult, failedResult, parseGenArgs } from './generator';
import {
  BUILTIN_PEERS,
  CLUSTER_PEERS,
  type PeerSpec,
  RunningCluster,
  type RunningPeer,
  brokerMissing,
  extraPeers,
  startCluster,
  startPeer,
} from './peers';
import { rssKiB } from './procfs';
import { markdown, type ReportMeta, svg } from './report';
import { type RunRecord, summarize } from './stats';
import { checkTargets } from './targets';

const RESERVED_PORTS = [6379, 4222];
/** Throughput servers from the base, fresh mem servers from +100, hold servers from +200, WebSocket ports +50. */
const PORTS_USED = 350;

interface Settings {
  readonly reps: number;
  readonly durationS: number;
  readonly cases: BenchCase[];
  readonly peers: string[] | null;
  readonly workers: number;
  readonly portBase: number;
  readonly holdReps: number;
  /** Run every case on peers that accept connections slowly too (BENCH_SLOW_PEERS=1). */
  readonly slowPeers: boolean;
  readonly wsClient: WsClientKind;
}

function readSettings(env: NodeJS.ProcessEnv): Settings {
  const int = (name: string, fallback: number, min: number): number => {
    const text = env[name];
    if (text === undefined || text === '') return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min)
      throw new RangeError(`${name} must be an integer >= ${min}; got ${text}`);
    return value;
  };
  const durationText = env.BENCH_DURATION ?? '3';
  const durationS = Number(durationText);
  if (!Number.isFinite(durationS) || durationS <= 0)
    throw new RangeError(`BENCH_DURATION must be seconds > 0; got ${durationText}`);
  const peersText = env.BENCH_PEERS?.trim();
  const portBase = int('BENCH_PORT_BASE', 21000, 1024);
  if (portBase + PORTS_USED > 65535)
    throw new RangeError(`BENCH_PORT_BASE too high: the bench uses ${PORTS_USED} ports from it`);
  for (const reserved of RESERVED_PORTS) {
    if (reserved >= portBase && reserved < portBase + PORTS_USED)
      throw new RangeError(`BENCH_PORT_BASE: the range would include port ${reserved}, which is in use`);
  }
  return {
    reps: int('BENCH_REPS', 3, 1),
    durationS,
    cases: parseCases(env.BENCH_CASES?.trim() || DEFAULT_CASES),
    peers: peersText ? peersText.split(/[\s,]+/) : null,
    workers: int('BENCH_WORKERS', defaultWorkers(), 1),
    portBase,
    holdReps: int('BENCH_HOLD_REPS', 1, 1),
    slowPeers: env.BENCH_SLOW_PEERS === '1',
    wsClient: wsClientOf(env.BENCH_WS_CLIENT),
  };
}

function wsClientOf(text: string | undefined): WsClientKind {
  if (text === undefined || text === '' || text === 'own') return 'own';
  if (text === 'library') return 'library';
  throw new RangeError(`BENCH_WS_CLIENT must be own or library; got ${text}`);
}

/** Each repetition starts with a different peer, so no peer always runs first or last. */
function rotate<T>(items: readonly T[], by: number): T[] {
  if (items.length === 0) return [];
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** How a peer's server ended (`when`: e.g. ` during the run`), and where its log is. */
function serverExited(peer: RunningPeer, when = ''): string {
  return `server exited${when} (code ${peer.child.exitCode}, signal ${peer.child.signalCode}; see ${peer.logFile})`;
}

/** Whether `spec` takes `benchCase`'s kind and clients (a cluster case: its broker, with clients of its own). */
function takes(spec: PeerSpec, benchCase: BenchCase): boolean {
  if (benchCase.kind === 'cluster') return spec.cluster?.brokers.includes(benchCase.broker) === true;
  return spec.kinds.includes(benchCase.kind) && serves(spec.nets, benchCase);
}

class Bench {
  readonly records: RunRecord[] = [];
  /** Cases cut down for peers that accept connections slowly. */
  readonly cut = new Map<string, { reason: string; skipped: Set<string> }>();
  private readonly jsonl: ReturnType<typeof createWriteStream>;
  private readonly jsonlPath: string;
  private readonly generatorLog: string;
  /** Next port of a fresh server, per range: mem cases from portBase + 100, hold cases from portBase + 200. */
  private readonly nextPorts = new Map<number, number>();

  constructor(
    private readonly settings: Settings,
    private readonly workDir: string,
    resultsDir: string,
  ) {
    // Written as the runs go, renamed to latest.jsonl at the end: the three latest.* files always match.
    this.jsonlPath = join(resultsDir, 'latest.jsonl');
    this.jsonl = createWriteStream(`${this.jsonlPath}.partial`);
    this.generatorLog = join(workDir, 'generator.log');
  }

  /**
   * Whether `spec` runs `benchCase`: it must take its kind and its clients; slow accepters skip cases with
   * many connections.
   */
  runs(spec: PeerSpec, benchCase: BenchCase): boolean {
    if (!takes(spec, benchCase)) return false;
    if (spec.slowAccept === null || this.settings.slowPeers || connectionsOf(benchCase) <= SLOW_ACCEPT_CONNECTIONS)
      return true;
    let entry = this.cut.get(spec.name);
    if (entry === undefined) {
      entry = { reason: spec.slowAccept, skipped: new Set() };
      this.cut.set(spec.name, entry);
    }
    entry.skipped.add(benchCase.name);
    return false;
  }

  /** Runs the generator once against `peer`; always yields a record (a failed one if need be). */
  async measure(peer: RunningPeer, benchCase: BenchCase, rep: number, rss0: number): Promise<RunRecord> {
    const { settings } = this;
    const args = [
      '--host',
      '127.0.0.1',
      '--port',
      String(peer.port),
      '--proto',
      peer.spec.proto,
      '--server-pid',
      peer.pids.join(','),
      '--workers',
      String(settings.workers),
      '--tag',
      peer.spec.name,
      ...generatorArgs(benchCase, settings.durationS),
      ...(peer.spec.stripPrefix ? ['--strip-prefix'] : []),
      ...this.wsArgs(peer.spec, peer.port, benchCase),
      ...this.clusterArgs(peer, benchCase),
    ];
    const child = spawnTracked(process.execPath, [join(__dirname, 'generator.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const clients = 'receivers' in benchCase ? benchCase.receivers : benchCase.clients;
    const limitMs = (settings.durationS + 90 + clients / 50) * 1000;
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    await exited(child);
    clearTimeout(timer);
    if (stderr.trim() !== '')
      writeFileSync(this.generatorLog, `--- ${benchCase.name} ${peer.spec.name} rep ${rep}\n${stderr}`, { flag: 'a' });
    const rc = child.exitCode;
    let result: GenResult;
    const last = stdout.trim().split('\n').pop() ?? '';
    try {
      result = JSON.parse(last) as GenResult;
    } catch {
      const why =
        rc === null
          ? `generator killed after ${Math.round(limitMs / 1000)} s`
          : `generator exited ${rc} without a result`;
      const tail = stderr.trim().split('\n').slice(-2).join(' / ');
      result = failedResult(parseGenArgs(args), [why, ...(tail ? [tail] : [])], -1, 0);
    }
    if (!peer.alive) {
      const why = serverExited(peer, ' during the run');
      result = { ...result, ok: false, errors: [why, ...result.errors] };
    }
    const connections = benchCase.kind === 'mem' ? benchCase.clients : 0;
    const record: RunRecord = {
      peer: peer.spec.name,
      case: benchCase.name,
      kind: benchCase.kind,
      rep,
      rc,
      ...result,
      ok: result.ok && rc === 0,
      cpu_s_per_m:
        result.server_cpu_s >= 0 && result.deliveries > 0 ? (result.server_cpu_s / result.deliveries) * 1e6 : -1,
      rss0_kb: rss0,
      bytes_per_conn:
        connections > 0 && rss0 > 0 && result.server_rss_kb > 0
          ? Math.round(((result.server_rss_kb - rss0) * 1024) / connections)
          : -1,
    };
    this.add(record);
    return record;
  }

  add(record: RunRecord): void {
    this.records.push(record);
    this.jsonl.write(`${JSON.stringify(record)}\n`);
    const rate =
      record.deliveries_per_s >= 1e6
        ? `${(record.deliveries_per_s / 1e6).toFixed(2)} M/s`
        : `${(record.deliveries_per_s / 1e3).toFixed(1)} k/s`;
    const cores = (x: number): string => (record.elapsed_s > 0 && x >= 0 ? (x / record.elapsed_s).toFixed(2) : '-');
    const extra =
      record.kind === 'mem'
        ? ` ${record.bytes_per_conn} B/conn`
        : record.lat_cross_p50_us >= 0
          ? `  cross-node p50 ${record.lat_cross_p50_us} µs p99 ${record.lat_cross_p99_us} µs  lost ${record.lost}`
          : '';
    process.stderr.write(
      `[rep ${record.rep}] ${record.case.padEnd(12)} ${record.peer.padEnd(9)} ${rate.padStart(11)}  p50 ${String(record.lat_p50_us).padStart(6)} µs  p99 ${String(record.lat_p99_us).padStart(6)} µs  srv ${cores(record.server_cpu_s)}  gen ${cores(record.gen_cpu_s)}${extra}  ${record.ok ? 'ok' : `BAD ${record.errors.slice(0, 2).join(' / ')}`}\n`,
    );
  }

  /** The generator's WebSocket options for a case with WebSocket clients on `spec` serving on `port`. */
  wsArgs(spec: PeerSpec, port: number, benchCase: BenchCase): string[] {
    if (benchCase.net === 'tcp' || spec.wsProto === null) return [];
    return ['--ws-proto', spec.wsProto, '--ws-port', String(spec.wsPort(port)), '--ws-client', this.settings.wsClient];
  }

  /**
   * A cluster case's generator options: the port of each node (the clients split evenly, the first share on
   * the first node), and for a peer of WebSocket clients only, every client over WebSocket.
   */
  clusterArgs(peer: RunningPeer, benchCase: BenchCase): string[] {
    if (benchCase.kind !== 'cluster' || !(peer instanceof RunningCluster)) return [];
    const ports = peer.ports.join(',');
    const args = ['--ports', ports];
    const spec = peer.spec;
    if (spec.wsProto !== null && !spec.nets.includes('tcp')) {
      args.push('--ws-proto', spec.wsProto, '--ws-ports', ports, '--ws-clients', String(benchCase.clients));
      args.push('--ws-client', this.settings.wsClient);
    }
    return args;
  }

  deadPeer(spec: PeerSpec, benchCase: BenchCase, rep: number, why: string): void {
    const args = [
      '--port',
      '1',
      ...generatorArgs(benchCase, this.settings.durationS),
      ...this.wsArgs(spec, 1, benchCase),
    ];
    this.add({
      peer: spec.name,
      case: benchCase.name,
      kind: benchCase.kind,
      rep,
      rc: null,
      ...failedResult(parseGenArgs(args), [why], -1, 0),
      cpu_s_per_m: -1,
      rss0_kb: -1,
      bytes_per_conn: -1,
    });
  }

  /** Throughput cases: one long-running server per peer, runs interleaved. */
  async throughput(
    specs: readonly PeerSpec[],
    cases: readonly BenchCase[],
    skipped: { name: string; reason: string }[],
  ): Promise<PeerSpec[]> {
    const running: RunningPeer[] = [];
    for (const [i, spec] of specs.entries()) {
      try {
        running.push(await startPeer(spec, this.settings.portBase + i, this.workDir));
      } catch (error) {
        skipped.push({ name: spec.name, reason: `failed to start: ${(error as Error).message}` });
      }
    }
    try {
      await sleep(500);
      for (let rep = 1; rep <= this.settings.reps; rep += 1) {
        for (const benchCase of cases) {
          const peers = running.filter((p) => this.runs(p.spec, benchCase));
          for (const peer of rotate(peers, rep - 1)) {
            if (!peer.alive) {
              this.deadPeer(peer.spec, benchCase, rep, serverExited(peer));
              continue;
            }
            await this.measure(peer, benchCase, rep, -1);
            await sleep(200);
          }
        }
      }
    } finally {
      await Promise.all(running.map((peer) => peer.stop()));
    }
    return running.map((peer) => peer.spec);
  }

  /** Cases that need a fresh server per run: memory per idle connection, many concurrent clients. */
  async fresh(specs: readonly PeerSpec[], benchCase: BenchCase, reps: number): Promise<void> {
    const peers = specs.filter((spec) => spec.kinds.includes(benchCase.kind));
    for (let rep = 1; rep <= reps; rep += 1) {
      for (const spec of rotate(peers, rep - 1)) {
        if (!this.runs(spec, benchCase)) continue;
        const port = this.nextPort(this.settings.portBase + (benchCase.kind === 'mem' ? 100 : 200));
        let peer: RunningPeer;
        try {
          peer =
            benchCase.kind === 'cluster'
              ? await startCluster(spec, benchCase, this.workDir)
              : await startPeer(spec, port, this.workDir);
        } catch (error) {
          this.deadPeer(spec, benchCase, rep, (error as Error).message);
          continue;
        }
        try {
          await sleep(500);
          const rss0 = benchCase.kind === 'mem' ? rssKiB(peer.pid) : -1;
          await this.measure(peer, benchCase, rep, rss0);
        } finally {
          await peer.stop();
        }
        await sleep(300);
      }
    }
  }

  /** Ports of the range [lo, lo + 100) in turn. */
  private nextPort(lo: number): number {
    const port = this.nextPorts.get(lo) ?? lo;
    this.nextPorts.set(lo, port + 1 >= lo + 100 ? lo : port + 1);
    return port;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.jsonl.end(resolve));
    renameSync(`${this.jsonlPath}.partial`, this.jsonlPath);
  }
}

async function main(): Promise<number> {
  installCleanup();
  const started = Date.now();
  const asked = readSettings(process.env);
  // A cluster case needs its broker installed (the bench starts a private one): without it, the case is skipped.
  const skippedCases: { name: string; reason: string }[] = [];
  const settings: Settings = {
    ...asked,
    cases: asked.cases.filter((benchCase) => {
      const why = benchCase.kind === 'cluster' ? brokerMissing(benchCase.broker) : null;
      if (why !== null) skippedCases.push({ name: benchCase.name, reason: why });
      return why === null;
    }),
  };
  const all = [...BUILTIN_PEERS, ...CLUSTER_PEERS, ...extraPeers(process.env.BENCH_EXTRA_PEERS)];
  const wanted = settings.peers ?? all.map((p) => p.name);
  const unknown = wanted.filter((name) => !all.some((p) => p.name === name));
  if (unknown.length > 0)
    throw new RangeError(
      `BENCH_PEERS: unknown peer(s) ${unknown.join(', ')}; known: ${all.map((p) => p.name).join(', ')}`,
    );
  const skipped: { name: string; reason: string }[] = [];
  const available: PeerSpec[] = [];
  for (const spec of all) {
    if (!wanted.includes(spec.name)) {
      skipped.push({ name: spec.name, reason: 'not in BENCH_PEERS' });
      continue;
    }
    if (!settings.cases.some((c) => (c.kind === 'cluster' ? takes(spec, c) : serves(spec.nets, c)))) {
      skipped.push({ name: spec.name, reason: `takes none of the cases run (${spec.nets.join(', ')} cases only)` });
      continue;
    }
    if (!settings.cases.some((c) => takes(spec, c))) {
      skipped.push({ name: spec.name, reason: `takes none of the cases run (${spec.kinds.join(', ')} cases only)` });
      continue;
    }
    const why = spec.unavailable();
    if (why === null) available.push(spec);
    else skipped.push({ name: spec.name, reason: why });
  }
  const resultsDir = join(__dirname, '..', '..', 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const workDir = mkdtempSync(join(tmpdir(), 'socket-multiplexer-bench-'));
  const load = loadavg();
  process.stderr.write(
    `bench: ${settings.reps} rep(s) × ${settings.durationS} s; cases ${settings.cases.map((c) => c.name).join(' ')}\n` +
      `bench: peers ${available.map((p) => p.name).join(' ')}${skipped.length > 0 ? `; skipped ${skipped.map((s) => `${s.name} (${s.reason})`).join(', ')}` : ''}\n` +
      `bench: logs in ${workDir}\n` +
      skippedCases.map((c) => `bench: case ${c.name} skipped: ${c.reason}\n`).join(''),
  );
  if (load[0] > cpus().length * 0.5)
    process.stderr.write(
      `bench: warning: load average ${load[0].toFixed(2)} on ${cpus().length} cores: figures will be noisy\n`,
    );

  const bench = new Bench(settings, workDir, resultsDir);
  let ran: PeerSpec[] = available;
  const throughputCases = settings.cases.filter(isThroughput);
  // Cluster peers run cluster cases only, on nodes started per run: no long-running server of theirs.
  const clusterPeers = available.filter((spec) => spec.cluster !== undefined);
  if (throughputCases.length > 0) {
    const single = available.filter((spec) => spec.cluster === undefined);
    ran = [...(await bench.throughput(single, throughputCases, skipped)), ...clusterPeers];
  }
  for (const benchCase of settings.cases.filter((c) => !isThroughput(c))) {
    await bench.fresh(ran, benchCase, benchCase.kind === 'hold' ? settings.holdReps : settings.reps);
  }
  await bench.close();

  const summaries = summarize(bench.records);
  const builtin = new Set([...BUILTIN_PEERS, ...CLUSTER_PEERS].map((p) => p.name));
  const targets = checkTargets(
    summaries,
    ran.filter((p) => !builtin.has(p.name)).map((p) => p.name),
  );
  const meta: ReportMeta = {
    date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown CPU',
    loadAverage: load,
    reps: settings.reps,
    durationS: settings.durationS,
    workers: settings.workers,
    ran: ran.map((p) => ({ name: p.name, description: p.description })),
    skipped,
    skippedCases,
    cut: [...bench.cut.entries()].map(([name, entry]) => ({ name, reason: entry.reason, skipped: [...entry.skipped] })),
    wallS: (Date.now() - started) / 1000,
    command: commandLine(),
  };
  const md = markdown(meta, summaries, targets, bench.records);
  writeFileSync(join(resultsDir, 'latest.md'), md);
  writeFileSync(join(resultsDir, 'latest.svg'), svg(meta, summaries));
  process.stdout.write(`${md}\n`);
  process.stderr.write(
    `bench: wrote bench/results/latest.md, latest.svg, latest.jsonl in ${Math.round(meta.wallS)} s\n`,
  );
  const projectBad = bench.records.filter((r) => !r.ok && r.peer.startsWith('mux'));
  if (projectBad.length > 0) {
    process.stderr.write(`bench: ${projectBad.length} run(s) of the project's server were not clean\n`);
    return 1;
  }
  return 0;
}

function commandLine(): string {
  const knobs = [
    'BENCH_REPS',
    'BENCH_DURATION',
    'BENCH_CASES',
    'BENCH_PEERS',
    'BENCH_WORKERS',
    'BENCH_HOLD_REPS',
    'BENCH_SLOW_PEERS',
    'BENCH_EXTRA_PEERS',
    'BENCH_WS_CLIENT',
  ]
    .filter((name) => process.env[name] !== undefined && process.env[name] !== '')
    .map((name) => `${name}=${JSON.stringify(process.env[name])}`);
  return [...knobs, 'npm run bench'].join(' ');
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(2);
  },
);
