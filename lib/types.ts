import type { AddressInfo } from 'node:net';
import type { Client, RemoteClient } from './client';
import type { TlsServerOptions } from './options';

/** Why a client left. Exit filters and the `exit` event receive one of these. */
export type ExitReason =
  /** The client closed its side (EOF, or a WebSocket close frame). */
  | 'eof'
  /** The connection was reset (ECONNRESET, EPIPE). */
  | 'reset'
  /** Another socket error; the `exit` event carries it. */
  | 'error'
  /** Server code called `client.disconnect()`. */
  | 'kicked'
  /** Its outbound backlog passed `maxQueuedBytes` under the `disconnect` policy. */
  | 'slow-consumer'
  /** It sent a message longer than `maxMessageBytes` under the `disconnect` policy. */
  | 'line-too-long'
  /** It passed its rate limit under the `disconnect` action. */
  | 'rate-limit'
  /** Nothing was read or written for `idleTimeout` ms. */
  | 'idle'
  /** The multiplexer was destroyed. */
  | 'destroy'
  /** The process-wide `memoryBudget` was reached and this client held the most. */
  | 'memory-budget'
  /** Data waited for it and its connection took none for `sendTimeout` ms. */
  | 'send-timeout'
  /** It began a message and did not finish it within `messageTimeout` ms. */
  | 'message-timeout'
  /** It broke its transport's protocol: TLS renegotiation, a malformed or invalid WebSocket frame. */
  | 'protocol-error'
  /** A WebSocket client did not answer a ping in time. */
  | 'ping-timeout';

/** Every exit reason, in documentation order. */
export const EXIT_REASONS: readonly ExitReason[] = [
  'eof',
  'reset',
  'error',
  'kicked',
  'slow-consumer',
  'line-too-long',
  'rate-limit',
  'idle',
  'destroy',
  'memory-budget',
  'send-timeout',
  'message-timeout',
  'protocol-error',
  'ping-timeout',
];

/** Why a connection was refused before it joined. */
export type DenyReason =
  /** An access filter returned `-1` or `false`. */
  | 'access-filter'
  /** An access filter threw or rejected (fail closed). */
  | 'access-error'
  /** `maxClients` were connected already. */
  | 'max-clients'
  /** `maxConnectionsPerAddress` were connected from its address group already. */
  | 'max-per-address'
  /** A WebSocket upgrade came from a page whose Origin is not allowed. */
  | 'origin'
  /** The multiplexer was shutting down. */
  | 'destroyed';

/** Every deny reason, in documentation order. */
export const DENY_REASONS: readonly DenyReason[] = [
  'access-filter',
  'access-error',
  'max-clients',
  'max-per-address',
  'origin',
  'destroyed',
];

/** A limit that acted on a client without disconnecting it. */
export type LimitKind =
  /** Its backlog passed `maxQueuedBytes`: messages for it are being dropped (reported once per episode). */
  | 'slow-consumer'
  /**
   * Senders no longer wait for it: it held them back for `stallTimeout` ms in all while others kept up, or it
   * is behind and stopped taking bytes (once per episode of being behind).
   */
  | 'lagging'
  /** A line past `maxMessageBytes` was discarded (`lineOverflow: 'discard'`). */
  | 'line-too-long'
  /** It passed its rate limit: reading from it pauses until the rate allows more (once per episode). */
  | 'rate-limit'
  /** The memory budget was reached: its oldest queued messages were dropped to bring the process under it. */
  | 'memory-budget';

/** Every limit kind, in documentation order. */
export const LIMIT_KINDS: readonly LimitKind[] = [
  'slow-consumer',
  'lagging',
  'line-too-long',
  'rate-limit',
  'memory-budget',
];

/** What user code an error reported through the `error` event came from. */
export type ErrorSource =
  'filter' | 'accessFilter' | 'exitFilter' | 'forwardFilter' | 'broadcast' | 'framing' | 'listener' | 'server' | 'bus';

/** Where an error reported through the `error` event came from. */
export interface ErrorContext<S extends object = Record<string, unknown>> {
  /** The hook, listener or operation that failed. */
  readonly source: ErrorSource;
  /** The client concerned, or null. */
  readonly client?: Client<S>;
}

/** What a data filter returns: new data, `undefined` to pass the data on unchanged, `null` or `false` to drop it. */
export type FilterResult = Buffer | string | null | false | undefined | void;

/**
 * A data filter (Tcl `AddFilter`): gets the data and its sender, returns what to broadcast.
 *
 * In `raw` framing `data` is a chunk as it was read (wherever its boundaries fall); in `line` framing it is one line
 * without its terminator, and the result gets a `\n` appended; with a custom framing, one message of it.
 */
export type DataFilter<S extends object = Record<string, unknown>> = (
  data: Buffer,
  client: Client<S>,
) => FilterResult | Promise<FilterResult>;

/** What an access filter returns: `-1` or `false` denies, anything else grants. */
export type AccessDecision = boolean | number | string | null | undefined | void;

/** An access filter (Tcl `AddAccessFilter`): decides whether a new client may join. Throwing denies. */
export type AccessFilter<S extends object = Record<string, unknown>> = (
  client: Client<S>,
) => AccessDecision | Promise<AccessDecision>;

/**
 * An exit filter (Tcl `AddExitFilter`): runs once when a client that joined leaves. Its result is ignored;
 * a Promise it returns is awaited before the next exit filter and the `exit` event.
 */
export type ExitFilter<S extends object = Record<string, unknown>> = (client: Client<S>, reason: ExitReason) => unknown;

/** Who sent a message being delivered: a local client, a client of another node, or server code (null). */
export type Sender<S extends object = Record<string, unknown>> = Client<S> | RemoteClient<S> | null;

/**
 * What a forward filter returns for one receiver: `undefined` to send the shared bytes, a Buffer or string
 * to send that instead (as given, like `client.send`), `null` or `false` to skip this receiver.
 */
export type ForwardResult = Buffer | string | null | false | undefined | void;

/**
 * A forward filter: runs for each receiver of each message, synchronously, after the target is applied.
 * `message` is the bytes about to be written (in `line` framing with the terminator).
 */
export type ForwardFilter<S extends object = Record<string, unknown>> = (
  message: Buffer,
  receiver: Client<S>,
  sender: Sender<S>,
) => ForwardResult;

/**
 * Who gets a delivery. Serializable but for `except`, which never needs to travel: it is decided where the
 * sender is.
 */
export interface Target<S extends object = Record<string, unknown>> {
  /** A local client that does not get it (the sender, unless `sendToOrigin`). */
  readonly except?: Client<S> | null;
  /** Absent: everyone. A list: the members of these rooms, once each. Empty: nobody. */
  readonly rooms?: readonly string[];
  /** True: only this node's clients, not the other nodes of a cluster. */
  readonly local?: boolean;
}

/** Where and how to listen, for one call of `listen()`. */
export interface ListenOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to bind; default all (IPv6 and IPv4). */
  host?: string;
  /** A Unix socket path instead of TCP. */
  path?: string;
  /** File mode of the Unix socket. Default `0o600`: only this user may connect. */
  mode?: number;
  /** Pending-connection queue length. */
  backlog?: number;
  /** TLS for this listener (`key`, `cert`, ...); `false` for none. Default: the constructor's `tls`. */
  tls?: TlsServerOptions | false;
}

/** A listener's bound address: a TCP address, or the Unix socket path. */
export type BoundAddress = AddressInfo | string;

/** Options of `destroy()`. */
export interface DestroyOptions {
  /** How long to let healthy clients take what is queued for them before closing them hard (ms). Default 5000. */
  timeout?: number;
}
