import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { ReadonlySetView } from './core/readonly-set';
import type { Session } from './core/session';
import { invalidArgument } from './errors';
import type { TransportKind } from './transport/connection';
import type { ExitReason } from './types';

export type { ExitReason } from './types';

/**
 * One connected client: where it comes from, how it came, per-client state, its rooms, and what server code
 * can do with it.
 *
 * What it is owed reaches it once per event-loop turn, as slices of the turn's shared buffer; when it is
 * behind, ranges of those buffers wait in its queue (never a copy per client). Its queue plus what its
 * connection still holds is bounded by `maxQueuedBytes`.
 */
export class Client<S extends object = Record<string, unknown>> {
  /**
   * Per-client state for server code (a chat nick, a user id). Starts empty, so every field is optional
   * (`Partial<S>`) even after a hook has set it: check before use.
   */
  state: Partial<S> = {};
  /** When the connection was accepted (ms since the epoch). */
  readonly connectedAt = Date.now();
  /** Bytes read from the client. */
  bytesIn = 0;
  /** Messages the client sent that were broadcast. */
  messagesIn = 0;
  /** Messages dropped for this client under a `drop-*` slow-consumer policy or the memory budget. */
  drops = 0;
  private roomsView: ReadonlySet<string> | null = null;

  /** @internal Clients are made by the multiplexer. */
  constructor(
    /** @internal */ readonly session: Session<S>,
    /** The node it is connected to (the multiplexer's `node`). */
    readonly node: string,
  ) {}

  /** Unique within its multiplexer, increasing. */
  get id(): number {
    return this.session.id;
  }

  /** The peer's IP address (IPv4-mapped IPv6 addresses are given as IPv4), or `'local'` for Unix sockets. */
  get address(): string {
    return this.session.connection.address;
  }

  /** The peer's port (0 for Unix sockets). */
  get port(): number {
    return this.session.connection.port;
  }

  /** What it came by: `'tcp'`, `'tls'`, `'unix'`, `'ws'` or `'wss'`. */
  get transport(): TransportKind {
    return this.session.connection.kind;
  }

  /** The stream socket it came by (for WebSocket clients, the upgraded socket underneath). */
  get socket(): Socket {
    return this.session.connection.socket as Socket;
  }

  /** For WebSocket clients, the HTTP upgrade request (URL, headers, cookies); null for stream clients. */
  get request(): IncomingMessage | null {
    return this.session.connection.request;
  }

  /**
   * Bytes waiting to be sent to the client: its queue (each entry counted with its overhead) plus what its
   * connection has not sent yet. What `maxQueuedBytes` bounds.
   */
  get queuedBytes(): number {
    return this.session.out.backlog;
  }

  /**
   * Inbound bytes held for it: messages waiting for its access decision, an async filter or its rate limit,
   * and what it sent while receivers were behind. Bounded by `maxPendingBytes` (plus a partial message).
   */
  get pendingBytes(): number {
    return this.session.in.heldBytes;
  }

  /** True while the client is connected and part of the broadcast. */
  get active(): boolean {
    return this.session.phase === 'member';
  }

  /** The rooms it is in (read-only, live). */
  get rooms(): ReadonlySet<string> {
    return (this.roomsView ??= new ReadonlySetView((this.session.rooms ??= new Set())));
  }

  /**
   * Puts the client in `room` (created on first use): `sendToRoom(room)` and broadcasts to the room reach it.
   * @returns false when it was in it already, or is not in the broadcast
   */
  join(room: string): boolean {
    return this.session.joinRoom(checkRoom(room));
  }

  /**
   * Takes the client out of `room`.
   * @returns false when it was not in it
   */
  leave(room: string): boolean {
    return this.session.leaveRoom(checkRoom(room));
  }

  /**
   * Queues data for this client alone, after what was broadcast to it before. Strings are sent as UTF-8.
   * @returns false when the client is leaving or the message was dropped by the slow-consumer policy
   */
  send(data: Buffer | string): boolean {
    return this.session.send(typeof data === 'string' ? Buffer.from(data) : data);
  }

  /**
   * Disconnects the client: it leaves the broadcast at once, gets what is already queued for it, then the
   * connection closes. Exit filters and the `exit` event run with `reason`.
   */
  disconnect(reason: ExitReason = 'kicked'): void {
    this.session.leave(reason, undefined, true);
  }

  /** `client 3 (127.0.0.1:50412)`, for logs. */
  toString(): string {
    return this.session.toString();
  }
}

/**
 * A client connected to another node of the cluster, as the bus and presence describe it: the sender of a
 * message that came from elsewhere, as forward filters see it.
 */
export interface RemoteClient<S extends object = Record<string, unknown>> {
  /** The node it is connected to. */
  readonly node: string;
  /** Its id on that node. */
  readonly id: number;
  readonly address: string;
  readonly port: number;
  /** The state fields its node publishes (see the `presence` option), else empty. */
  readonly state: Partial<S>;
}

function checkRoom(room: string): string {
  if (typeof room !== 'string' || room === '')
    throw invalidArgument(`a room is a non-empty string; got ${String(room)}`);
  return room;
}
