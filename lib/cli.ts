#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { accessList } from './admission/access';
import { BUS_URL, busFromUrl } from './bus/from-url';
import { Multiplexer } from './multiplexer';
import { DEFAULTS, isBooleanSetting, SETTING_KEYS, type MultiplexerOptions, type SettingKey } from './options';

/** The port used when `--port` is not given. */
export const DEFAULT_PORT = 7777;

const kebab = (key: string): string => key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);

const SETTING_HELP: Record<SettingKey, string> = {
  sendToOrigin: 'the sender receives its own messages too',
  debugLevel: 'log level: debug|info|notice|warn|error|critical',
  maxQueuedBytes: 'per-client outbound backlog bound, bytes',
  highWaterMark: 'backlog above which senders wait for a reading client, bytes',
  stallTimeout: 'ms in all a client above the mark may hold senders back',
  slowConsumer: 'past max-queued-bytes: disconnect|drop-newest|drop-oldest',
  maxPendingBytes: 'inbound bytes held per client before reading pauses',
  maxClients: 'most clients at once (0: no limit)',
  maxConnectionsPerAddress: 'most connections from one address (0: no limit)',
  maxMessageBytes: 'longest line in line framing, bytes',
  lineOverflow: 'an over-long line: disconnect|discard',
  idleTimeout: 'disconnect after this many idle ms (0: off)',
  maxMessagesPerSecond: 'per-client message rate limit (0: off)',
  maxBytesPerSecond: 'per-client byte rate limit (0: off)',
  rateLimitAction: 'past the rate limit: throttle|disconnect',
  filterErrors: 'a failing filter: pass|drop',
  allowHalfOpen: 'keep a client that sent EOF as a receiver',
  memoryBudget: 'bytes held for all clients together (0: off)',
  sendTimeout: 'cut a client that takes no bytes for this many ms (0: off)',
  messageTimeout: 'cut a client whose partial line is older than this, ms (0: off)',
  ipv4Prefix: 'IPv4 prefix length the per-address limit counts by',
  ipv6Prefix: 'IPv6 prefix length the per-address limit counts by',
  outboxBytes: 'with --bus: bytes waiting for the bus before the oldest are shed',
  outboxAge: 'with --bus: ms a frame may wait for the bus before it is shed',
  heartbeatInterval: 'with --bus: ms between heartbeats to the other nodes',
  nodeTimeout: 'with --bus: ms without news before another node is down',
  busOverflow: 'with --bus: a slow bus past stall-timeout: shed|wait',
};

const options: ParseArgsConfig['options'] = {
  port: { type: 'string', short: 'p' },
  host: { type: 'string', short: 'H' },
  path: { type: 'string' },
  framing: { type: 'string' },
  allow: { type: 'string', multiple: true },
  deny: { type: 'string', multiple: true },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  'path-mode': { type: 'string' },
  bus: { type: 'string' },
  channel: { type: 'string' },
  'node-id': { type: 'string' },
  // WebSocket clients (loaded only when --ws-port is given).
  'ws-port': { type: 'string' },
  'ws-path': { type: 'string' },
  'ws-origin': { type: 'string', multiple: true },
  'ws-ping-interval': { type: 'string' },
  'ws-compression': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};
for (const key of SETTING_KEYS) options[kebab(key)] = { type: isBooleanSetting(key) ? 'boolean' : 'string' };

function usage(): string {
  const settings = SETTING_KEYS.map((key) => {
    const flag = isBooleanSetting(key) ? `--${kebab(key)}` : `--${kebab(key)} <v>`;
    return `  ${flag.padEnd(36)}${SETTING_HELP[key]} (default ${String(DEFAULTS[key])})`;
  });
  return [
    'Usage: multiplexer [options]',
    '',
    'One-to-many TCP broadcast: what one client sends, every other client receives.',
    '',
    `  -p, --port <n>                      TCP port (default ${DEFAULT_PORT}; 0 picks a free one)`,
    '  -H, --host <addr>                   interface to bind (default: all)',
    '  --path <file>                       listen on a Unix socket instead of TCP',
    '  --path-mode <octal>                 file mode of the Unix socket (default 600: this user only)',
    '  --framing raw|line                  raw chunks (default) or whole lines',
    '  --allow <cidr>                      only let these addresses in (repeat or comma-separate)',
    '  --deny <cidr>                       keep these addresses out (repeat or comma-separate)',
    '  --tls-cert <file> --tls-key <file>  listen with TLS',
    '  --shutdown-timeout <ms>             on SIGINT/SIGTERM/SIGHUP, time to flush queues (default 5000)',
    '  --bus <url>                         join other nodes: redis://H:P, redis-cluster://H:P[,H:P...],',
    '                                      nats://H:P[,H:P...]',
    '  --channel <name>                    the bus channel (default multiplexer; matched exactly)',
    "  --node-id <id>                      this node's id on the bus (default: random per process)",
    '  --ws-port <n>                       WebSocket clients on this port too (same --host; wss with --tls-*)',
    '  --ws-path <path>                    their path (default /)',
    '  --ws-origin <origin>                allow only browser pages of this origin (repeatable)',
    '  --ws-ping-interval <ms>             ping WebSocket clients this often; 0 off (default 30000)',
    '  --ws-compression                    offer permessage-deflate (memory and CPU per client)',
    ...settings,
    '  -h, --help                          show this help',
    '  -v, --version                       show the version',
  ].join('\n');
}

class UsageError extends Error {}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function listOf(values: unknown): string[] {
  if (!Array.isArray(values)) return [];
  return values
    .flatMap((value) => String(value).split(','))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Raises the soft descriptor limit to the hard one, where the OS allows (Linux with prlimit). */
function raiseDescriptorLimit(): void {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((text) => text.startsWith('Max open files'));
    const [soft, hard] = (line ?? '').split(/\s+/).slice(3, 5);
    if (soft !== undefined && hard !== undefined && soft !== hard) {
      spawnSync('prlimit', [`--pid=${process.pid}`, `--nofile=${hard}:${hard}`], { stdio: 'ignore', timeout: 2000 });
    }
  } catch {
    // Not Linux, or no prlimit: keep the limit we have.
  }
}

interface Plan {
  readonly options: MultiplexerOptions;
  readonly bus: { readonly url: string; readonly channel: string } | null;
  readonly listen: { port?: number; host?: string; path?: string; mode?: number };
  readonly allow: string[];
  readonly deny: string[];
  readonly shutdownTimeout: number;
  readonly ws: WebSocketPlan | null;
}

/** Where WebSocket clients come, from the --ws-* flags. */
interface WebSocketPlan {
  readonly port: number;
  readonly path: string;
  readonly origins: string[] | undefined;
  readonly pingInterval: number | undefined;
  readonly compression: boolean;
}

function webSocketPlan(values: Record<string, unknown>): WebSocketPlan | null {
  const portText = stringOf(values['ws-port']);
  const ping = stringOf(values['ws-ping-interval']);
  if (portText === undefined) {
    const stray = ['ws-path', 'ws-origin', 'ws-ping-interval', 'ws-compression'].find(
      (flag) => values[flag] !== undefined,
    );
    if (stray !== undefined) throw new UsageError(`--${stray} goes with --ws-port`);
    return null;
  }
  if (!/^\d+$/.test(portText) || Number(portText) > 65535)
    throw new UsageError(`--ws-port must be 0..65535; got ${portText}`);
  const path = stringOf(values['ws-path']) ?? '/';
  if (!path.startsWith('/')) throw new UsageError(`--ws-path must start with /; got ${path}`);
  if (ping !== undefined && !/^\d+$/.test(ping)) throw new UsageError(`--ws-ping-interval must be ms; got ${ping}`);
  const origins = listOf(values['ws-origin']);
  return {
    port: Number(portText),
    path,
    origins: origins.length > 0 ? origins : undefined,
    pingInterval: ping === undefined ? undefined : Number(ping),
    compression: values['ws-compression'] === true,
  };
}

function plan(argv: string[]): Plan | 'help' | 'version' {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | (string | boolean)[] | undefined>;
  if (values.help === true) return 'help';
  if (values.version === true) return 'version';
  const settings: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const value = values[kebab(key)];
    if (value !== undefined) settings[key] = value;
  }
  const framing = stringOf(values.framing) ?? 'raw';
  if (framing !== 'raw' && framing !== 'line') throw new UsageError(`--framing must be raw or line; got ${framing}`);
  const portText = stringOf(values.port);
  const port = portText === undefined ? DEFAULT_PORT : Number(portText);
  if (!/^\d+$/.test(portText ?? '0') || port > 65535) throw new UsageError(`--port must be 0..65535; got ${portText}`);
  const timeoutText = stringOf(values['shutdown-timeout']) ?? '5000';
  if (!/^\d+$/.test(timeoutText)) throw new UsageError(`--shutdown-timeout must be a number of ms; got ${timeoutText}`);
  const cert = stringOf(values['tls-cert']);
  const key = stringOf(values['tls-key']);
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  let tls: MultiplexerOptions['tls'];
  try {
    tls = cert !== undefined && key !== undefined ? { cert: readFileSync(cert), key: readFileSync(key) } : undefined;
  } catch (error) {
    throw new UsageError(`cannot read TLS files: ${(error as Error).message}`);
  }
  const busUrl = stringOf(values.bus);
  const channel = stringOf(values.channel) ?? 'multiplexer';
  if (busUrl !== undefined && !BUS_URL.test(busUrl)) {
    throw new UsageError(
      `--bus must be redis://HOST:PORT, redis-cluster://HOST:PORT[,...] or nats://HOST:PORT[,...]; got ${busUrl}`,
    );
  }
  if (busUrl === undefined && (values.channel !== undefined || values['node-id'] !== undefined)) {
    throw new UsageError('--channel and --node-id go with --bus');
  }
  const nodeId = stringOf(values['node-id']);
  if (nodeId !== undefined && (nodeId === '' || Buffer.byteLength(nodeId) > 255)) {
    throw new UsageError('--node-id must be 1 to 255 bytes');
  }
  const path = stringOf(values.path);
  const modeText = stringOf(values['path-mode']);
  if (modeText !== undefined && (!/^[0-7]{1,4}$/.test(modeText) || parseInt(modeText, 8) > 0o777)) {
    throw new UsageError(`--path-mode must be an octal file mode such as 600 or 660; got ${modeText}`);
  }
  if (modeText !== undefined && path === undefined) throw new UsageError('--path-mode goes with --path');
  const ws = webSocketPlan(values);
  return {
    options: { ...settings, framing, tls, node: nodeId },
    bus: busUrl === undefined ? null : { url: busUrl, channel },
    listen:
      path !== undefined
        ? { path, mode: modeText === undefined ? undefined : parseInt(modeText, 8) }
        : { port, host: stringOf(values.host) },
    allow: listOf(values.allow),
    deny: listOf(values.deny),
    shutdownTimeout: Number(timeoutText),
    ws,
  };
}

function describe(address: AddressInfo | string, secure: boolean): string {
  if (typeof address === 'string') return `unix:${address}`;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${secure ? 'tls://' : ''}${host}:${address.port}`;
}

/** Listens for WebSocket clients too; `ws` is loaded only now. Resolves with their URL. */
async function listenWebSocket(
  mux: Multiplexer,
  plan: WebSocketPlan,
  host: string | undefined,
  tls: MultiplexerOptions['tls'],
): Promise<string> {
  const { websocket } = await import('./ws');
  const address = await mux.listen(
    websocket({
      port: plan.port,
      host,
      path: plan.path,
      origins: plan.origins,
      pingInterval: plan.pingInterval,
      compression: plan.compression,
    }),
  );
  const text = describe(address, false);
  return `${tls !== undefined ? 'wss' : 'ws'}://${text}${plan.path}`;
}

/** Runs the CLI; resolves with the exit code once the server has shut down (or failed to start). */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  let setup: Plan;
  let mux: Multiplexer;
  try {
    const result = plan(argv);
    if (result === 'help') {
      process.stdout.write(`${usage()}\n`);
      return 0;
    }
    if (result === 'version') {
      process.stdout.write(`${version()}\n`);
      return 0;
    }
    setup = result;
    const bus = setup.bus === null ? undefined : await busFromUrl(setup.bus.url, setup.bus.channel);
    mux = new Multiplexer({ ...setup.options, bus });
    if (setup.allow.length > 0 || setup.deny.length > 0)
      mux.addAccessFilter(accessList({ allow: setup.allow, deny: setup.deny }));
  } catch (error) {
    if (error instanceof UsageError || error instanceof TypeError) {
      process.stderr.write(`multiplexer: ${error.message}\n\n${usage()}\n`);
      return 2;
    }
    throw error;
  }
  raiseDescriptorLimit();
  // A closed stdout or stderr (its reader gone) must never take the server down: writes to it are dropped.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  // Handlers first: a supervisor may signal the moment it sees the ready line.
  let stopped: Promise<number> | null = null;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopped !== null) {
      process.stderr.write(`multiplexer: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    process.stderr.write(`multiplexer: ${signal}, shutting down\n`);
    stopped = mux.destroy({ timeout: setup.shutdownTimeout }).then(() => 0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // A hangup (the terminal or the supervisor went away) is a graceful shutdown too.
  process.on('SIGHUP', stop);
  let address: AddressInfo | string;
  let wsAddress: string | null = null;
  try {
    address = await mux.listen(setup.listen);
    if (setup.ws !== null) wsAddress = await listenWebSocket(mux, setup.ws, setup.listen.host, setup.options.tls);
  } catch (error) {
    if (stopped !== null) return stopped;
    process.stderr.write(`multiplexer: ${(error as Error).message}\n`);
    await mux.destroy({ timeout: 0 });
    return 1;
  }
  if (setup.bus !== null) {
    process.stdout.write(`multiplexer node ${mux.node} on the ${setup.bus.url} bus, channel ${setup.bus.channel}\n`);
  }
  const where = describe(address, setup.options.tls !== undefined) + (wsAddress === null ? '' : ` and ${wsAddress}`);
  process.stdout.write(`multiplexer listening on ${where} (${mux.framing.name} framing)\n`);
  return new Promise<number>((resolve) => {
    if (stopped !== null) void stopped.then(resolve);
    else mux.once('close', () => resolve(0));
  });
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`multiplexer: ${String(error)}\n`);
      process.exit(1);
    },
  );
}
