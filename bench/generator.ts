/**
 * The load generator: `node dist/bench/generator.js --port P [options]`, one JSON line on stdout.
 *
 * Connects receivers (and senders) to a broadcast server through worker threads, warms up until every
 * receiver got a message, optionally holds the connections idle (and reads the server's RSS), sends for
 * `--duration` seconds under a per-sender window, then waits until everything sent has arrived. Every
 * delivery is checked: nothing lost, duplicated or reordered per sender. Exit status: 0 clean, 1 a check
 * failed, 2 setup failed.
 *
 * WebSocket clients: `--ws-proto ws-text|ws-binary|socketio` (text frames of lines without their newline,
 * binary frames of the message as is, socket.io events), `--ws-port` (default: `--port`), and how many
 * speak it: `--ws-clients N` of the receivers (all-mode: of the clients) and `--ws-senders N` of the
 * dedicated senders (default: all), the others speaking `--proto` over TCP. `--ws-client library` uses
 * the `ws` and socket.io-client packages instead of the generator's own codec.
 *
 * Rooms (`--mode all --rooms R`, TCP line clients): client i first sends `/room <i % R>` and from then on
 * must get the messages of the other members of its room only; a delivery from another room is counted
 * malformed. Each room's first client sends the warm-up messages of its room.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import {
  type CoordinatorMessage,
  type GenConfig,
  type GenIdentity,
  type SharedBuffers,
  type WorkerInit,
  type WorkerMessage,
  type WorkerStats,
  allocateShared,
  defaultWorkers,
  roomOf,
  roomSize,
  viewsOf,
} from './gen-shared';
import { Histogram } from './histogram';
import { MAX_SENDERS, MIN_MESSAGE_BYTES } from './message';
import { cpuSeconds, rssKiB } from './procfs';
import { WS_PROTOCOLS, protocolNamed } from './protocols';

/** What one generator run reports (one JSON line). */
export interface GenResult extends GenIdentity {
  readonly messages_sent: number;
  readonly deliveries_expected: number;
  readonly deliveries: number;
  readonly lost: number;
  readonly gaps: number;
  readonly backsteps: number;
  readonly malformed: number;
  readonly self_deliveries: number;
  readonly server_closed: number;
  readonly elapsed_s: number;
  readonly deliveries_per_s: number;
  readonly mb_per_s: number;
  readonly lat_p50_us: number;
  readonly lat_p99_us: number;
  readonly lat_max_us: number;
  /** A cluster (--ports): latency of cross-node deliveries (sender on another node) and same-node ones; else -1. */
  readonly lat_cross_p50_us: number;
  readonly lat_cross_p99_us: number;
  readonly lat_same_p50_us: number;
  readonly lat_same_p99_us: number;
  /** CPU seconds of the generator process (all threads) during the measured run. */
  readonly gen_cpu_s: number;
  /** CPU seconds of the server during the measured run; -1 if unknown. */
  readonly server_cpu_s: number;
  /** Server RSS after the hold, KiB; -1 if not measured. */
  readonly server_rss_kb: number;
  readonly setup_s: number;
  readonly ok: boolean;
  readonly errors: readonly string[];
}

function nowNs(epoch: bigint): number {
  return Number(process.hrtime.bigint() - epoch);
}

export function parseGenArgs(argv: string[]): GenConfig {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      proto: { type: 'string', default: 'line' },
      mode: { type: 'string', default: 'dedicated' },
      clients: { type: 'string', default: '10' },
      senders: { type: 'string', default: '1' },
      size: { type: 'string', default: '64' },
      rooms: { type: 'string', default: '0' },
      window: { type: 'string' },
      batch: { type: 'string', default: '0' },
      rate: { type: 'string', default: '0' },
      duration: { type: 'string', default: '3' },
      'idle-timeout': { type: 'string', default: '5' },
      'setup-timeout': { type: 'string' },
      hold: { type: 'string', default: '0' },
      'server-pid': { type: 'string', default: '0' },
      'strip-prefix': { type: 'boolean', default: false },
      workers: { type: 'string', default: String(defaultWorkers()) },
      'connect-concurrency': { type: 'string', default: '4' },
      tag: { type: 'string', default: '' },
      'ws-proto': { type: 'string' },
      'ws-port': { type: 'string' },
      ports: { type: 'string' },
      'ws-ports': { type: 'string' },
      'ws-clients': { type: 'string' },
      'ws-senders': { type: 'string' },
      'ws-client': { type: 'string', default: 'own' },
    },
  });
  const int = (name: string, text: string | undefined, min: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min)
      throw new RangeError(`--${name} must be an integer >= ${min}; got ${text}`);
    return value;
  };
  const num = (name: string, text: string | undefined): number => {
    const value = Number(text);
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`--${name} must be a number >= 0; got ${text}`);
    return value;
  };
  const mode = values.mode;
  if (mode !== 'all' && mode !== 'dedicated') throw new RangeError(`--mode must be all or dedicated; got ${mode}`);
  const proto = protocolNamed(values.proto ?? 'line').name;
  const receivers = int('clients', values.clients, 1);
  const senders = mode === 'all' ? receivers : int('senders', values.senders, 1);
  if (senders > MAX_SENDERS) throw new RangeError(`at most ${MAX_SENDERS} senders`);
  const size = int('size', values.size, MIN_MESSAGE_BYTES);
  const wsProto = values['ws-proto'] === undefined ? null : protocolNamed(values['ws-proto']).name;
  if (wsProto !== null && !WS_PROTOCOLS.includes(wsProto))
    throw new RangeError(`--ws-proto must be one of ${WS_PROTOCOLS.join(', ')}; got ${wsProto}`);
  // With a WebSocket protocol, every client speaks it unless told how many.
  const wsDefault = (count: number): string => String(wsProto === null ? 0 : count);
  const wsClients = int('ws-clients', values['ws-clients'] ?? wsDefault(receivers), 0);
  const wsSenders = int('ws-senders', values['ws-senders'] ?? wsDefault(senders), 0);
  if (wsProto === null && wsClients + wsSenders > 0)
    throw new RangeError('--ws-clients and --ws-senders need --ws-proto');
  if (wsClients > receivers || (mode === 'dedicated' && wsSenders > senders))
    throw new RangeError('--ws-clients / --ws-senders: more than there are clients / senders');
  const rooms = int('rooms', values.rooms, 0);
  if (rooms > 0) {
    if (mode !== 'all') throw new RangeError('--rooms goes with --mode all');
    if (proto !== 'line' || wsProto !== null) throw new RangeError('--rooms: TCP line clients only');
    if (receivers < 2 * rooms) throw new RangeError('--rooms: every room needs at least 2 clients');
  }
  const wsClient = values['ws-client'];
  if (wsClient !== 'own' && wsClient !== 'library')
    throw new RangeError(`--ws-client must be own or library; got ${wsClient}`);
  const port = int('port', values.port, 1);
  const wsPort = values['ws-port'] === undefined ? port : int('ws-port', values['ws-port'], 1);
  const list = (name: string, text: string | undefined, fallback: number): number[] =>
    text === undefined ? [fallback] : text.split(',').map((word) => int(name, word, 1));
  const ports = list('ports', values.ports, port);
  // A cluster's WebSocket clients go to the nodes' ports unless told.
  const wsPorts =
    values['ws-ports'] === undefined && ports.length > 1 ? ports : list('ws-ports', values['ws-ports'], wsPort);
  if (wsPorts.length !== ports.length) throw new RangeError('--ws-ports: one per node of --ports');
  if (ports.length > 1 && mode !== 'all') throw new RangeError('--ports (a cluster) goes with --mode all');
  return {
    host: values.host ?? '127.0.0.1',
    port: ports[0],
    proto,
    mode,
    receivers,
    senders,
    size,
    rooms,
    // Default window: about 32 KiB ahead of the slowest receiver.
    window: values.window === undefined ? Math.max(1, Math.floor(32768 / size)) : int('window', values.window, 0),
    batch: int('batch', values.batch, 0),
    rate: num('rate', values.rate),
    durationMs: num('duration', values.duration) * 1000,
    idleTimeoutMs: num('idle-timeout', values['idle-timeout']) * 1000,
    // Slow accepters (a listen backlog of 10) need tens of seconds for a thousand connections.
    setupTimeoutMs:
      values['setup-timeout'] === undefined
        ? 60_000 + receivers * 10
        : num('setup-timeout', values['setup-timeout']) * 1000,
    holdMs: num('hold', values.hold) * 1000,
    serverPids: (values['server-pid'] ?? '0')
      .split(',')
      .map((word) => int('server-pid', word, 0))
      .filter((pid) => pid > 0),
    stripPrefix: values['strip-prefix'] ?? false,
    workers: Math.min(int('workers', values.workers, 1), receivers),
    connectConcurrency: int('connect-concurrency', values['connect-concurrency'], 1),
    tag: values.tag ?? '',
    wsProto,
    wsPort: wsPorts[0],
    ports,
    wsPorts,
    wsClients,
    wsSenders: mode === 'all' ? 0 : wsSenders,
    wsClient,
  };
}

class Workers {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<string, { count: number; resolve: () => void }>();
  readonly results: WorkerStats[] = [];
  fatal: string | null = null;
  private onFatal: ((message: string) => void) | null = null;

  constructor(config: GenConfig, epoch: bigint, shared: SharedBuffers) {
    for (let index = 0; index < config.workers; index += 1) {
      const workerData: WorkerInit = { config, index, epochNs: epoch.toString(), shared };
      const worker = new Worker(join(__dirname, 'gen-worker.js'), { workerData });
      worker.on('message', (message: WorkerMessage) => this.onMessage(message));
      worker.on('error', (error: Error) => this.die(`worker ${index}: ${error.stack ?? error.message}`));
      this.workers.push(worker);
    }
  }

  private onMessage(message: WorkerMessage): void {
    if (message.type === 'fatal') return this.die(message.message);
    if (message.type === 'result') this.results.push(message.stats);
    const wait = this.waiting.get(message.type);
    if (wait !== undefined && (wait.count -= 1) === 0) {
      this.waiting.delete(message.type);
      wait.resolve();
    }
  }

  private die(message: string): void {
    if (this.fatal === null) this.fatal = message;
    this.onFatal?.(message);
  }

  /** Resolves when every worker sent `type`; rejects on a fatal error or after `timeoutMs`. */
  all(type: WorkerMessage['type'], timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.fatal !== null) return reject(new Error(this.fatal));
      const timer = setTimeout(
        () => reject(new Error(`timed out after ${timeoutMs} ms waiting for workers: ${type}`)),
        timeoutMs,
      );
      this.onFatal = (message) => {
        clearTimeout(timer);
        reject(new Error(message));
      };
      this.waiting.set(type, {
        count: this.workers.length,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  post(message: CoordinatorMessage, to?: number): void {
    if (to === undefined) for (const worker of this.workers) worker.postMessage(message);
    else this.workers[to].postMessage(message);
  }

  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}

/** The figures of the measured run. */
type Measured = Omit<GenResult, keyof GenIdentity | 'server_rss_kb' | 'setup_s' | 'ok' | 'errors'>;

/** Figures of a run that was not measured (or failed); its key order is that of a failed result's line. */
const NOT_MEASURED: Measured = {
  messages_sent: 0,
  deliveries_expected: 0,
  deliveries: 0,
  lost: 0,
  gaps: 0,
  backsteps: 0,
  malformed: 0,
  self_deliveries: 0,
  server_closed: 0,
  elapsed_s: 0,
  deliveries_per_s: 0,
  mb_per_s: 0,
  lat_p50_us: 0,
  lat_p99_us: 0,
  lat_max_us: 0,
  lat_cross_p50_us: -1,
  lat_cross_p99_us: -1,
  lat_same_p50_us: -1,
  lat_same_p99_us: -1,
  gen_cpu_s: 0,
  server_cpu_s: -1,
};

/** The sum of `read` over every PID (a cluster's processes), or -1 when one cannot be read. */
function total(pids: readonly number[], read: (pid: number) => number): number {
  let sum = 0;
  for (const pid of pids) {
    const value = read(pid);
    if (value < 0) return -1;
    sum += value;
  }
  return pids.length > 0 ? sum : -1;
}

function sum(values: Int32Array): number {
  let total = 0;
  for (let i = 0; i < values.length; i += 1) total += Atomics.load(values, i);
  return total;
}

export async function generate(config: GenConfig): Promise<GenResult> {
  const protocol = protocolNamed(config.proto);
  const epoch = process.hrtime.bigint();
  const buffers = allocateShared(config.workers, config.senders);
  const shared = viewsOf(buffers);
  const workers = new Workers(config, epoch, buffers);
  const setupStart = nowNs(epoch);
  const errors: string[] = [];
  let serverRss = -1;
  let measured: Measured | null = null;
  let setupSeconds = 0;
  try {
    const setupDeadline = Date.now() + config.setupTimeoutMs;
    await workers.all('connected', config.setupTimeoutMs);
    await sleep(100);
    // Warm-up: sender 0 (with rooms: each room's first client) repeats a warm-up message until every
    // receiver got one.
    const ownExcluded = config.mode === 'all' && !protocol.selfDelivery;
    const wantWarm = config.receivers - (config.rooms > 0 ? config.rooms : ownExcluded ? 1 : 0);
    if (config.rooms > 0) workers.post({ type: 'warmup', on: true });
    else workers.post({ type: 'warmup', on: true }, 0);
    while (sum(shared.warm) < wantWarm) {
      if (workers.fatal !== null) throw new Error(workers.fatal);
      if (Date.now() > setupDeadline) {
        throw new Error(
          `setup timeout: ${wantWarm - sum(shared.warm)} of ${wantWarm} receivers got no warm-up message within ${config.setupTimeoutMs / 1000} s`,
        );
      }
      await sleep(10);
    }
    if (config.rooms > 0) workers.post({ type: 'warmup', on: false });
    else workers.post({ type: 'warmup', on: false }, 0);
    await sleep(50);
    setupSeconds = nowNs(epoch) / 1e9 - setupStart / 1e9;
    if (config.holdMs > 0) {
      process.stderr.write('READY\n');
      await sleep(config.holdMs);
      serverRss = total(config.serverPids, rssKiB);
    }
    if (config.durationMs > 0) {
      const cpu0 = process.cpuUsage();
      const serverCpu0 = total(config.serverPids, cpuSeconds);
      const start = nowNs(epoch);
      workers.post({ type: 'run', startNs: start });
      let last = 0;
      let lastChange = Date.now();
      const idle = (): boolean => {
        const now = sum(shared.delivered);
        if (now !== last) {
          last = now;
          lastChange = Date.now();
        }
        return Date.now() - lastChange > config.idleTimeoutMs;
      };
      while (nowNs(epoch) - start < config.durationMs * 1e6) {
        if (workers.fatal !== null) throw new Error(workers.fatal);
        if (idle()) {
          errors.push(`no delivery for ${config.idleTimeoutMs / 1000} s while sending: stopped early`);
          break;
        }
        await sleep(Math.min(20, config.durationMs));
      }
      workers.post({ type: 'stop' });
      await workers.all('stopped', 10_000);
      const sent = sum(shared.sent);
      const receiversPerMessage = config.receivers - (config.mode === 'all' ? 1 : 0);
      const expected = config.rooms > 0 ? roomDeliveries(config, shared.sent) : sent * receiversPerMessage;
      while (sum(shared.delivered) < expected) {
        if (workers.fatal !== null) throw new Error(workers.fatal);
        if (idle()) {
          errors.push(`no delivery for ${config.idleTimeoutMs / 1000} s while draining: gave up`);
          break;
        }
        await sleep(5);
      }
      const cpu = process.cpuUsage(cpu0);
      const serverCpu1 = total(config.serverPids, cpuSeconds);
      let end = start;
      for (let w = 0; w < config.workers; w += 1) end = Math.max(end, shared.lastRx[w]);
      const delivered = sum(shared.delivered);
      const elapsed = (end - start) / 1e9;
      measured = {
        ...NOT_MEASURED,
        messages_sent: sent,
        deliveries_expected: expected,
        deliveries: delivered,
        elapsed_s: round(elapsed, 4),
        deliveries_per_s: elapsed > 0 ? Math.round(delivered / elapsed) : 0,
        mb_per_s: elapsed > 0 ? round((delivered * config.size) / elapsed / 1e6, 2) : 0,
        gen_cpu_s: round((cpu.user + cpu.system) / 1e6, 3),
        server_cpu_s: serverCpu0 >= 0 && serverCpu1 >= 0 ? round(serverCpu1 - serverCpu0, 3) : -1,
      };
    }
    workers.post({ type: 'finish' });
    await workers.all('result', 10_000);
  } catch (error) {
    errors.push((error as Error).message);
    // What the workers saw (malformed frames, a close reason) tells why; ask them, briefly, unless they died.
    if (workers.fatal === null && workers.results.length === 0) {
      workers.post({ type: 'finish' });
      await workers.all('result', 2000).catch(() => undefined);
      for (const stats of workers.results) errors.push(...stats.errors);
    }
    await workers.terminate();
    return failedResult(config, errors.slice(0, 8), serverRss, setupSeconds);
  }
  await workers.terminate();
  const histogram = new Histogram();
  const cross = new Histogram();
  const same = new Histogram();
  let lost = 0;
  let gaps = 0;
  let backsteps = 0;
  let malformed = 0;
  let selfDeliveries = 0;
  let serverClosed = 0;
  for (const stats of workers.results) {
    const h = new Histogram(stats.histogram);
    h.maxUs = stats.maxUs;
    histogram.add(h);
    cross.add(new Histogram(stats.crossHistogram));
    same.add(new Histogram(stats.sameHistogram));
    lost += stats.lost;
    gaps += stats.gaps;
    backsteps += stats.backsteps;
    malformed += stats.malformed;
    selfDeliveries += stats.selfDeliveries;
    serverClosed += stats.serverClosed;
    errors.push(...stats.errors);
  }
  // A gap moves a receiver past the missing message: count what never arrived from the totals too.
  if (measured !== null) lost = Math.max(lost, measured.deliveries_expected - measured.deliveries);
  const ok =
    errors.length === 0 && lost === 0 && gaps === 0 && backsteps === 0 && malformed === 0 && serverClosed === 0;
  const m = measured ?? NOT_MEASURED;
  // Key order of the JSON line: the run's totals and times first, then the checks.
  return {
    ...identity(config),
    messages_sent: m.messages_sent,
    deliveries_expected: m.deliveries_expected,
    deliveries: m.deliveries,
    elapsed_s: m.elapsed_s,
    deliveries_per_s: m.deliveries_per_s,
    mb_per_s: m.mb_per_s,
    gen_cpu_s: m.gen_cpu_s,
    server_cpu_s: m.server_cpu_s,
    lost,
    gaps,
    backsteps,
    malformed,
    self_deliveries: selfDeliveries,
    server_closed: serverClosed,
    lat_p50_us: histogram.percentile(0.5),
    lat_p99_us: histogram.percentile(0.99),
    lat_max_us: histogram.maxUs,
    ...clusterLatency(config, cross, same),
    server_rss_kb: serverRss,
    setup_s: round(setupSeconds, 3),
    ok,
    errors: errors.slice(0, 8),
  };
}

/** Cross-node and same-node latency percentiles of a cluster run (-1 on one node, or with none of the kind). */
function clusterLatency(
  config: GenConfig,
  cross: Histogram,
  same: Histogram,
): Pick<GenResult, 'lat_cross_p50_us' | 'lat_cross_p99_us' | 'lat_same_p50_us' | 'lat_same_p99_us'> {
  const of = (h: Histogram, p: number): number => (config.ports.length > 1 && h.total > 0 ? h.percentile(p) : -1);
  return {
    lat_cross_p50_us: of(cross, 0.5),
    lat_cross_p99_us: of(cross, 0.99),
    lat_same_p50_us: of(same, 0.5),
    lat_same_p99_us: of(same, 0.99),
  };
}

/** Deliveries due for what each sender sent, when every message goes to the rest of its sender's room. */
function roomDeliveries(config: GenConfig, sent: Int32Array): number {
  let total = 0;
  for (let s = 0; s < sent.length; s += 1)
    total += Atomics.load(sent, s) * (roomSize(roomOf(s, config.rooms), config.rooms, config.receivers) - 1);
  return total;
}

function identity(config: GenConfig): GenIdentity {
  return {
    tag: config.tag,
    proto: config.proto,
    mode: config.mode,
    receivers: config.receivers,
    senders: config.senders,
    size: config.size,
    window: config.window,
    batch: config.batch,
    rate: config.rate,
    workers: config.workers,
  };
}

export function failedResult(config: GenConfig, errors: string[], serverRss: number, setupSeconds: number): GenResult {
  return {
    ...identity(config),
    ...NOT_MEASURED,
    server_rss_kb: serverRss,
    setup_s: round(setupSeconds, 3),
    ok: false,
    errors,
  };
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

async function main(): Promise<number> {
  let config: GenConfig;
  try {
    config = parseGenArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`generator: ${(error as Error).message}\n`);
    return 2;
  }
  const result = await generate(config);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (result.ok) return 0;
  return result.deliveries_expected > 0 || config.durationMs === 0 ? 1 : 2;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`generator: ${String(error)}\n`);
      process.exit(2);
    },
  );
}
