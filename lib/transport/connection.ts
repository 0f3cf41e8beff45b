import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { ConnectionGate } from '../admission/gate';
import type { Framing } from '../framing/framing';
import type { Logger } from '../log';
import type { Settings, TlsServerOptions } from '../options';
import type { DenyReason, ExitReason } from '../types';

/** What carries a client: TCP, TLS (over TCP or a Unix socket), a Unix socket, WebSocket (plain or TLS). */
export type TransportKind = 'tcp' | 'tls' | 'unix' | 'ws' | 'wss';

/** The encoding a connection's receivers take their share of a turn in: stream bytes, or WebSocket frames. */
export type Codec = 'stream' | 'ws';

/**
 * What a connection reports to the session that owns it. Calls come from socket events; the session never
 * throws back into them.
 */
export interface ConnectionOwner {
  /** A chunk of the byte stream, or one whole WebSocket message (`text` says which kind of frame). */
  onData(data: Buffer, text: boolean): void;
  /** A write completed: the kernel took bytes. */
  onWritten(): void;
  /** The peer will send no more (EOF, a WebSocket close frame). */
  onEnd(): void;
  /** The connection failed; `reason` says how the client leaves. */
  onError(error: Error, reason: ExitReason): void;
  /** The connection is closed: nothing more will come, nothing more can go. */
  onClose(): void;
  /** Nothing was read or written for the idle timeout. */
  onIdle(): void;
}

/**
 * One accepted connection, whatever carries it. The core writes to it and reads from it through this seam
 * alone: TCP, TLS, Unix and WebSocket connections all look the same to sessions and the fan-out.
 */
export interface Connection {
  readonly kind: TransportKind;
  /** The encoding its share of a turn is taken in. */
  readonly codec: Codec;
  /** The peer's IP address (IPv4-mapped IPv6 given as IPv4), or `'local'` for Unix sockets. */
  readonly address: string;
  /** The peer's port; 0 for Unix sockets. */
  readonly port: number;
  /** The stream socket underneath (for WebSocket, the upgraded socket), or null once detached. */
  readonly socket: Socket | null;
  /** For WebSocket connections, the HTTP upgrade request (URL, headers, cookies). */
  readonly request: IncomingMessage | null;
  /** Who gets its events. Set once, when the core adopts it. */
  owner: ConnectionOwner | null;
  /** Bytes handed to `write` that the kernel has not taken yet. */
  readonly pending: number;
  /** False once it can take no more writes (closing, closed). */
  readonly writable: boolean;
  /**
   * Hands bytes to the kernel, already in this connection's codec. `owner.onWritten` follows once they are
   * taken. Several views are written in one system call.
   */
  write(views: readonly Buffer[]): void;
  /** Encodes one message of the stream codec into this connection's codec (identity for streams). */
  encode(message: Buffer, text: boolean): Buffer;
  /** Stops reading from it (what it sends stays in the kernel, and TCP pushes back). */
  pause(): void;
  /** Reads again. */
  resume(): void;
  /** Sets the idle timeout (0: none). */
  setIdleTimeout(ms: number): void;
  /**
   * The transport-level part of admission, once the access filters granted the client (a WebSocket upgrade
   * completes here). Resolves false when the connection went away meanwhile.
   */
  accept(): Promise<boolean> | boolean;
  /** Refuses a connection that was not accepted (a WebSocket upgrade answers an HTTP error). */
  refuse(reason: DenyReason): void;
  /**
   * A polite close once what was written is sent: TCP sends FIN and reads and discards until the peer closes
   * (so that a peer still sending does not get a reset that wipes out what it was told last); WebSocket sends
   * a close frame with the code of `reason`. After `graceMs` it is destroyed.
   */
  end(reason: ExitReason, graceMs: number): void;
  /**
   * Closes at once. With `reset`, what the kernel has not sent yet is discarded and the peer gets a reset
   * (TCP and TLS): for a peer that takes nothing, whose unsent bytes would otherwise hold kernel memory
   * until the kernel gives up on it.
   */
  destroy(reset?: boolean): void;
}

/** What a transport needs from the multiplexer it feeds. */
export interface TransportHost {
  /** Counts connections before their handshake; every transport uses the same one. */
  readonly gate: ConnectionGate;
  readonly log: Logger;
  /** True once `destroy()` began: new connections are refused. */
  readonly destroyed: boolean;
  /** The settings in force (read them when needed: `config()` changes them at run time). */
  readonly settings: Readonly<Settings>;
  /** The framing in use (a WebSocket transport sizes and frames messages by it). */
  readonly framing: Framing;
  /** The multiplexer's own TLS options (its constructor's `tls`): the default of transports that listen. */
  readonly tls: TlsServerOptions | undefined;
  /**
   * Takes a connection that passed the gate (and its handshake): the access filters run next. `pass` is
   * given back to the gate when the connection is gone.
   */
  adopt(connection: Connection, pass: ReturnType<ConnectionGate['enter']>['pass']): void;
  /** A connection refused by the gate: counted, reported with a `deny` event, closed. */
  refuse(connection: Connection, pass: ReturnType<ConnectionGate['enter']>['pass'], reason: DenyReason): void;
  /** Reports an error of the listener itself (accept failed); the server keeps serving. */
  report(error: unknown): void;
}

/** A way clients arrive: a TCP/TLS port, a Unix socket, a WebSocket endpoint. */
export interface Transport {
  readonly kind: TransportKind;
  /** Starts accepting; resolves with the bound address. */
  listen(host: TransportHost): Promise<AddressInfo | string>;
  /** The bound address while listening, else null. */
  address(): AddressInfo | string | null;
  /** Stops accepting and destroys connections still in a handshake; resolves once closed. */
  close(): Promise<void>;
}

/** True for a {@link Transport} object (rather than listen options). */
export function isTransport(value: unknown): value is Transport {
  if (typeof value !== 'object' || value === null) return false;
  const transport = value as Partial<Transport>;
  return typeof transport.listen === 'function' && typeof transport.close === 'function';
}

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is reported as the IPv4 address, as Tcl does. */
export function normalizeAddress(address: string | undefined): string {
  if (address === undefined) return 'local';
  return address.startsWith('::ffff:') && /^\d+\.\d+\.\d+\.\d+$/.test(address.slice(7)) ? address.slice(7) : address;
}
