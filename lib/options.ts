import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { invalidArgument } from './errors';
import type { Bus } from './bus/bus';
import type { Framing } from './framing';
import { LOG_LEVELS, type LogLevel } from './log';

/** What happens to a client whose outbound backlog passes `maxQueuedBytes`. */
export type SlowConsumerPolicy = 'disconnect' | 'drop-newest' | 'drop-oldest';

/** What happens to a client that sends a line longer than `maxMessageBytes` in line framing. */
export type LineOverflowPolicy = 'disconnect' | 'discard';

/** What happens to a client that sends faster than its rate limit. */
export type RateLimitAction = 'throttle' | 'disconnect';

/** What happens to a message whose data filter throws. */
export type FilterErrorPolicy = 'pass' | 'drop';

/** The settings that `config()` can read and change at run time. Defaults are in {@link DEFAULTS}. */
export interface Settings {
  /** The sender receives its own messages too (Tcl `sendtoorigin`). Default `false`. */
  sendToOrigin: boolean;
  /** Log threshold (Tcl `debuglevel`). Default `'warn'`. */
  debugLevel: LogLevel;
  /**
   * Bound of one client's outbound backlog, in bytes; past it `slowConsumer` applies. Four times that for one
   * second after the client began lagging while it still reads (the senders let go land their backlog on it at
   * once), within `memoryBudget`.
   * Default 8 MiB.
   */
  maxQueuedBytes: number;
  /**
   * Soft bound of one client's outbound backlog: while a reading client is above it, reading from senders
   * pauses until it drains below half of it. Default 1 MiB.
   */
  highWaterMark: number;
  /**
   * How long (ms, in all) a client above `highWaterMark` may hold senders back while most other clients keep
   * up; then it is lagging, a slow consumer that senders no longer wait for. It earns the time back while it
   * keeps up. When most clients are behind together, the server is the bottleneck and nobody is blamed.
   * Default 250.
   */
  stallTimeout: number;
  /** Policy for a client past `maxQueuedBytes`. Default `'disconnect'`. */
  slowConsumer: SlowConsumerPolicy;
  /** Bound of a client's inbound data that waits for an access decision or an async filter; reading from it
   * pauses past this. Default 1 MiB. */
  maxPendingBytes: number;
  /** Most clients at once; 0 is no limit. Excess connections are closed at once. Default 0. */
  maxClients: number;
  /** Most connections from one address; 0 is no limit. Default 0. */
  maxConnectionsPerAddress: number;
  /** Longest message in `line` framing (or a custom framing that honours it), in bytes. Default 64 KiB. */
  maxMessageBytes: number;
  /** Policy for an over-long line. Default `'disconnect'`. */
  lineOverflow: LineOverflowPolicy;
  /** Disconnect a client after this many ms without input or output; 0 is off. Default 0. */
  idleTimeout: number;
  /** Per-client limit of messages per second; 0 is off. Default 0. */
  maxMessagesPerSecond: number;
  /** Per-client limit of bytes per second; 0 is off. Default 0. */
  maxBytesPerSecond: number;
  /** What a rate limit does: pause reading (nothing lost) or disconnect. Default `'throttle'`. */
  rateLimitAction: RateLimitAction;
  /** A throwing data filter lets the message through unchanged (`'pass'`, as Tcl) or drops it. Default `'pass'`. */
  filterErrors: FilterErrorPolicy;
  /** Keep a client that half-closed (sent EOF) as a receiver until it closes. Default `false`, as Tcl. */
  allowHalfOpen: boolean;
  /**
   * One budget, in bytes, for everything the server holds for all clients together: outbound queues and
   * writes in flight, held input, partial lines (a Buffer shared by many queues counts once). When it is
   * reached, the largest holders are dealt with first by their slow-consumer policy; past half of it, those
   * that never showed they read and took nothing for a second while output waited. 0 is off. Default 256 MiB.
   */
  memoryBudget: number;
  /**
   * A client with data waiting for it whose connection takes no bytes for this many ms is disconnected
   * (`send-timeout`), under every slow-consumer policy. 0 is off. Default 30000.
   */
  sendTimeout: number;
  /**
   * A client that began a message (a partial line) must finish it within this many ms, or it is
   * disconnected (`message-timeout`). 0 is off. Default 60000.
   */
  messageTimeout: number;
  /** `maxConnectionsPerAddress` counts IPv4 clients per prefix of this length. Default 32 (per address). */
  ipv4Prefix: number;
  /** `maxConnectionsPerAddress` counts IPv6 clients per prefix of this length. Default 64 (one host's share). */
  ipv6Prefix: number;
  /** With a bus: most bytes of frames waiting for it (slow or down); past it the oldest are shed. Default 16 MiB. */
  outboxBytes: number;
  /** With a bus: oldest frame (ms) kept waiting for it; older ones are shed. Default 10000. */
  outboxAge: number;
  /** With a bus: how often (ms) this node tells the others it is alive. Default 1000. */
  heartbeatInterval: number;
  /** With a bus: another node not heard for this long (ms) is down and its members gone. Default 5000. */
  nodeTimeout: number;
  /**
   * With a bus: a slow bus (its outbox above `highWaterMark`) holds local senders back for `stallTimeout`;
   * then it sheds its oldest frames (`'shed'`, counted, senders go on) or keeps them waiting (`'wait'`).
   * Default `'shed'`.
   */
  busOverflow: BusOverflowPolicy;
}

/** What a slow bus does past its stall budget. */
export type BusOverflowPolicy = 'shed' | 'wait';

/**
 * TLS settings: the secure-context options of `tls.createSecureContext` (`key`, `cert`, `ca`, `ciphers`,
 * `minVersion`, ...) and these server options. `handshakeTimeout` defaults to 10 000 ms.
 */
export type TlsServerOptions = SecureContextOptions &
  Pick<TlsOptions, 'requestCert' | 'rejectUnauthorized' | 'ALPNProtocols' | 'SNICallback' | 'handshakeTimeout'>;

/** Options of `new Multiplexer()`: every setting, plus those fixed at construction. */
export interface MultiplexerOptions extends Partial<Settings> {
  /** How bytes become messages: `'raw'` (chunks as they arrive, as Tcl), `'line'`, or your own. Default `'raw'`. */
  framing?: 'raw' | 'line' | Framing;
  /** Listen with TLS: at least `key` and `cert`. */
  tls?: TlsServerOptions;
  /** Instance name used in log namespaces (`multiplexer:<name>`). Default `mp<N>`. */
  name?: string;
  /** This node's id in a cluster, carried by every message it puts on a bus. Default: random per process. */
  node?: string;
  /**
   * Joins the other nodes of a cluster over this bus (`RedisBus`, `NatsBus`, a `MemoryHub`'s bus): what a
   * client on one node sends reaches every member on every node. Opened by the first `listen()`.
   */
  bus?: Bus;
  /**
   * With a bus: the `client.state` fields a client's presence publishes to the other nodes (with its id,
   * node and address), e.g. `['nick']`. Default none.
   */
  presence?: readonly string[];
}

/** The default of every setting. */
export const DEFAULTS: Readonly<Settings> = Object.freeze({
  sendToOrigin: false,
  debugLevel: 'warn',
  maxQueuedBytes: 8 * 1024 * 1024,
  highWaterMark: 1024 * 1024,
  stallTimeout: 250,
  slowConsumer: 'disconnect',
  maxPendingBytes: 1024 * 1024,
  maxClients: 0,
  maxConnectionsPerAddress: 0,
  maxMessageBytes: 64 * 1024,
  lineOverflow: 'disconnect',
  idleTimeout: 0,
  maxMessagesPerSecond: 0,
  maxBytesPerSecond: 0,
  rateLimitAction: 'throttle',
  filterErrors: 'pass',
  allowHalfOpen: false,
  memoryBudget: 256 * 1024 * 1024,
  sendTimeout: 30_000,
  messageTimeout: 60_000,
  ipv4Prefix: 32,
  ipv6Prefix: 64,
  outboxBytes: 16 * 1024 * 1024,
  outboxAge: 10_000,
  heartbeatInterval: 1000,
  nodeTimeout: 5000,
  busOverflow: 'shed',
});

/** A setting's name. */
export type SettingKey = keyof Settings;

const TCL_TRUE = new Set(['1', 'true', 'yes', 'on']);
const TCL_FALSE = new Set(['0', 'false', 'no', 'off']);

function parseBoolean(key: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  const text = String(value).toLowerCase();
  if (TCL_TRUE.has(text)) return true;
  if (TCL_FALSE.has(text)) return false;
  throw invalidArgument(`${key} must be a boolean (true/false, 1/0, yes/no, on/off); got ${describe(value)}`);
}

function parseCount(key: string, value: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < min || number > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw invalidArgument(`${key} must be an integer ${range}; got ${describe(value)}`);
  }
  return number;
}

function parseChoice<T extends string>(choices: readonly T[]) {
  return (key: string, value: unknown): T => {
    const found = choices.find((choice) => choice === value);
    if (found === undefined) {
      throw invalidArgument(`${key} must be one of ${choices.join(', ')}; got ${describe(value)}`);
    }
    return found;
  };
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

type Parsers = { [K in SettingKey]: (key: string, value: unknown) => Settings[K] };

const PARSERS: Parsers = {
  sendToOrigin: parseBoolean,
  debugLevel: parseChoice(LOG_LEVELS),
  maxQueuedBytes: (key, value) => parseCount(key, value, 1),
  highWaterMark: (key, value) => parseCount(key, value, 1),
  stallTimeout: (key, value) => parseCount(key, value, 1),
  slowConsumer: parseChoice(['disconnect', 'drop-newest', 'drop-oldest'] as const),
  maxPendingBytes: (key, value) => parseCount(key, value, 1),
  maxClients: parseCount,
  maxConnectionsPerAddress: parseCount,
  maxMessageBytes: (key, value) => parseCount(key, value, 1),
  lineOverflow: parseChoice(['disconnect', 'discard'] as const),
  idleTimeout: parseCount,
  maxMessagesPerSecond: parseCount,
  maxBytesPerSecond: parseCount,
  rateLimitAction: parseChoice(['throttle', 'disconnect'] as const),
  filterErrors: parseChoice(['pass', 'drop'] as const),
  allowHalfOpen: parseBoolean,
  memoryBudget: parseCount,
  sendTimeout: parseCount,
  messageTimeout: parseCount,
  ipv4Prefix: (key, value) => parseCount(key, value, 0, 32),
  ipv6Prefix: (key, value) => parseCount(key, value, 0, 128),
  outboxBytes: (key, value) => parseCount(key, value, 1),
  outboxAge: (key, value) => parseCount(key, value, 1),
  heartbeatInterval: (key, value) => parseCount(key, value, 10),
  nodeTimeout: (key, value) => parseCount(key, value, 10),
  busOverflow: parseChoice(['shed', 'wait'] as const),
};

/** Every setting name, in documentation order. */
export const SETTING_KEYS = Object.keys(PARSERS) as SettingKey[];

/** True for the on/off settings (a CLI flag without a value). */
export function isBooleanSetting(key: SettingKey): boolean {
  return PARSERS[key] === parseBoolean;
}

const BY_FOLDED_NAME = new Map<string, SettingKey>(SETTING_KEYS.map((key) => [fold(key), key]));

function fold(name: string): string {
  return name.toLowerCase().replace(/[-_]/g, '');
}

/**
 * Finds the setting a config key names: camelCase (`sendToOrigin`), the Tcl spelling (`sendtoorigin`)
 * or kebab-case (`send-to-origin`). Throws a TypeError naming the valid keys otherwise.
 */
export function settingKey(name: string): SettingKey {
  const key = typeof name === 'string' ? BY_FOLDED_NAME.get(fold(name)) : undefined;
  if (key === undefined) {
    throw invalidArgument(
      `unknown config key ${describe(name)}; valid keys: ${SETTING_KEYS.join(', ')} (Tcl spellings such as sendtoorigin and debuglevel work too)`,
      'ERR_UNKNOWN_CONFIG_KEY',
    );
  }
  return key;
}

/** Validates one setting's value, converting Tcl-style strings ("1", "yes", "4096"). */
export function parseSetting<K extends SettingKey>(key: K, value: unknown): Settings[K] {
  return PARSERS[key](key, value);
}

/** Validates constructor options up front and returns the complete settings. */
export function resolveSettings(options: MultiplexerOptions): Settings {
  if (options === null || typeof options !== 'object') {
    throw invalidArgument(`options must be an object; got ${describe(options)}`);
  }
  const settings: Settings = { ...DEFAULTS };
  const assign = <K extends SettingKey>(key: K, value: unknown): void => {
    settings[key] = parseSetting(key, value);
  };
  for (const key of SETTING_KEYS) {
    const value = options[key];
    if (value !== undefined) assign(key, value);
  }
  const known = new Set<string>([...SETTING_KEYS, 'framing', 'tls', 'name', 'node', 'bus', 'presence']);
  for (const key of Object.keys(options)) {
    if (!known.has(key)) {
      throw invalidArgument(`unknown option ${describe(key)}; valid options: ${[...known].join(', ')}`);
    }
  }
  return settings;
}
