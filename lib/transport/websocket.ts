/**
 * WebSocket clients, on the `ws` package (8.x) in `noServer` mode: a user's http/https server on a path, or
 * a port of the transport's own. Kept out of the core entry point (`socket-multiplexer/ws`), so that only
 * programs that use it load `ws` (an optional peer dependency).
 *
 * Admission comes before the upgrade: the path, the connection gate, the Origin allow list, then the access
 * filters, all on the HTTP upgrade request; a refusal is an HTTP answer, never an upgrade. Messages go out as
 * the frames the turn log built once for every WebSocket receiver, written straight to the upgraded socket
 * (see {@link writeFrames}: the one place that relies on more than ws's public API, with a fallback).
 */
import {
  createServer as createHttpServer,
  STATUS_CODES,
  type IncomingMessage,
  type Server as HttpServer,
} from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import type { GatePass } from '../admission/gate';
import { invalidArgument, withCode } from '../errors';
import { lineFraming } from '../framing/line';
import { messageFrames, OPCODE_BINARY, readFrames, type FrameView } from '../framing/websocket';
import type { TlsServerOptions } from '../options';
import type { DenyReason, ExitReason } from '../types';
import {
  normalizeAddress,
  type Codec,
  type Connection,
  type ConnectionOwner,
  type Transport,
  type TransportHost,
  type TransportKind,
} from './connection';
import { resetSocket, writeViews } from './stream';

/** permessage-deflate settings (those of `ws`'s `perMessageDeflate` that a server sets). */
export interface CompressionOptions {
  /** Messages smaller than this many bytes are sent uncompressed. Default 1024 (ws's). */
  threshold?: number;
  /** Compress each message on its own (no deflate context kept between messages): less memory. */
  serverNoContextTakeover?: boolean;
  /** Ask clients to do the same for what they send. */
  clientNoContextTakeover?: boolean;
  /** Window bits of the server's deflate context (8..15): smaller is less memory, worse ratio. */
  serverMaxWindowBits?: number;
  /** Largest window the server accepts from clients (8..15). */
  clientMaxWindowBits?: number;
}

/** Options of {@link websocket}. */
export interface WebSocketOptions {
  /**
   * Your http or https server: the transport listens to its `upgrade` event (on `path`) and leaves everything
   * else to it. `close()` detaches from it; the server itself is never closed. Clients are `wss` when it is
   * an https server.
   */
  server?: HttpServer;
  /** A port of the transport's own (0 picks a free one), when no `server` is given. Default 0. */
  port?: number;
  /** Interface of its own port. Default: all. */
  host?: string;
  /** Pending-connection queue length of its own port. */
  backlog?: number;
  /** The path WebSocket clients connect to (the query string is not part of it). Default `'/'`. */
  path?: string;
  /**
   * Origins allowed to connect (`'https://chat.example.com'`, scheme and host and port, as browsers send
   * them); absent, every origin. A request without an Origin header does not come from a browser page and is let in.
   */
  origins?: readonly string[];
  /**
   * TLS on its own port (`wss://`): `key`, `cert`, ... Default: the multiplexer's `tls` option; `false` for
   * plain `ws://` even then. Not used with `server` (an https server brings its own).
   */
  tls?: TlsServerOptions | false;
  /** Every this many ms each client is pinged; one that has not answered the last ping leaves with exit
   * reason `'ping-timeout'`. 0 turns pings off. Default 30000. */
  pingInterval?: number;
  /**
   * permessage-deflate, for clients that offer it. Off by default: it costs a deflate and an inflate context
   * per connection (about 300 KiB at zlib's defaults, unless `serverNoContextTakeover`), and one compression per
   * message per receiver, since what is compressed cannot be shared.
   */
  compression?: boolean | CompressionOptions;
  /**
   * Ms a connection has from its first byte (its own port) or its upgrade request (your server) until it is
   * upgraded, access decision included; past it, it is closed and its gate slot freed. Default 10000.
   */
  handshakeTimeout?: number;
}

/** Default time from connection (or upgrade request) to an open WebSocket. */
const HANDSHAKE_TIMEOUT = 10_000;
const PING_INTERVAL = 30_000;
/** How long a connection ws closed for a protocol error has to send its close frame before it is destroyed. */
const CLOSE_FLUSH_MS = 1000;
/** The shape of a valid Sec-WebSocket-Key (16 random bytes in base64). */
const KEY = /^[+/0-9A-Za-z]{22}==$/;

/**
 * The close code sent for each exit reason. Reasons that leave without a close handshake (`reset`, and those
 * that destroy the connection at once: `slow-consumer`, `memory-budget`, `send-timeout`, `ping-timeout`)
 * have one too, used when such a client is closed politely.
 */
export const CLOSE_CODES: Readonly<Record<ExitReason, number>> = Object.freeze({
  eof: 1000,
  reset: 1006,
  error: 1011,
  kicked: 1008,
  'slow-consumer': 1013,
  'line-too-long': 1009,
  'rate-limit': 1008,
  idle: 1001,
  destroy: 1001,
  'memory-budget': 1013,
  'send-timeout': 1013,
  'message-timeout': 1008,
  'protocol-error': 1002,
  'ping-timeout': 1001,
});

/** The HTTP status that refuses an upgrade for each deny reason. */
function statusOf(reason: DenyReason): number {
  return reason === 'max-clients' || reason === 'destroyed' ? 503 : 403;
}

/**
 * Writes a whole HTTP response on a socket that was not upgraded, and closes it once sent (what ws's own
 * refusals do). Nothing it sent after its request is read.
 */
function respond(socket: net.Socket, status: number, headers = ''): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${STATUS_CODES[status] ?? 'Error'}\n`;
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${headers}\r\n${body}`,
  );
}

/** The request's path, without its query string. */
function pathOf(request: IncomingMessage): string {
  const url = request.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** Why an upgrade request is not a WebSocket handshake ws would take: an HTTP status and headers, or null. */
function malformed(request: IncomingMessage): { status: number; headers?: string } | null {
  const headers = request.headers;
  if (request.method !== 'GET') return { status: 405 };
  if (headers.upgrade?.toLowerCase() !== 'websocket') return { status: 400 };
  const key = headers['sec-websocket-key'];
  if (key === undefined || !KEY.test(key)) return { status: 400 };
  const version = headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') return { status: 400, headers: 'Sec-WebSocket-Version: 13, 8\r\n' };
  return null;
}

/** Origins compare as browsers send them: lower case, no trailing slash. */
function normalizeOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, '');
}

// ---------------------------------------------------------------------------------------------- socket events

const kConnection = Symbol('websocket connection');
type OwnedSocket = net.Socket & { [kConnection]?: WebSocketConnection };
type OwnedWebSocket = WebSocket & { [kConnection]?: WebSocketConnection };

// One set of listener functions for every connection, finding it through a symbol (as ws's setSocket does).
function onSocketError(this: OwnedSocket, error: NodeJS.ErrnoException): void {
  const code = error.code;
  const reason: ExitReason = code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : 'error';
  this[kConnection]?.owner?.onError(error, reason);
}
function onSocketEnd(this: OwnedSocket): void {
  this[kConnection]?.owner?.onEnd();
}
function onSocketClose(this: OwnedSocket): void {
  this[kConnection]?.closed();
}
function onSocketTimeout(this: OwnedSocket): void {
  this[kConnection]?.owner?.onIdle();
}
function onMessage(this: OwnedWebSocket, data: Buffer, isBinary: boolean): void {
  this[kConnection]?.owner?.onData(data, !isBinary);
}
function onPong(this: OwnedWebSocket): void {
  const connection = this[kConnection];
  if (connection !== undefined) connection.alive = true;
}
function onWebSocketError(this: OwnedWebSocket, error: Error & { code?: string }): void {
  this[kConnection]?.protocolError(error);
}

// ---------------------------------------------------------------------------------------------- writing

/**
 * Hands frames we built (whole, unmasked, final, for every receiver alike) to a WebSocket connection, with
 * `done` called once they are written.
 *
 * The fast path writes them straight to the upgraded socket, as the turn log's shared slices, one system
 * call. This relies on more than ws's public API: that while permessage-deflate is off and nothing is sent
 * as a Blob, ws hands each frame it writes (pings, pongs, close) whole to that same socket before returning
 * and holds no frame bytes of its own, so the stream always ends on a frame boundary and our frames interleave
 * with its own (checked against ws 8.23 by spec/ws-assumption.spec.ts). The guard checks it with public API:
 * the connection is open, and ws holds nothing beyond what the socket holds. Otherwise (compression on, or ws
 * queued something) each frame goes back through `ws.send()`, one message at a time, in order behind it.
 */
function writeFrames(ws: WebSocket, socket: net.Socket, views: readonly Buffer[], done: () => void): void {
  if (ws.extensions === '' && ws.readyState === WebSocket.OPEN && ws.bufferedAmount === socket.writableLength) {
    writeViews(socket, views, done);
    return;
  }
  const frames: FrameView[] = [];
  for (const view of views) readFrames(view, frames);
  for (let i = 0; i < frames.length; i += 1) {
    const { opcode, payload } = frames[i];
    ws.send(payload, { binary: opcode === OPCODE_BINARY }, i === frames.length - 1 ? done : undefined);
  }
}

// ---------------------------------------------------------------------------------------------- the connection

/** Where a WebSocket connection is: its upgrade request waits for admission, open, closing, closed. */
type State = 'upgrading' | 'open' | 'closing' | 'closed';

/**
 * One WebSocket client, from its upgrade request on. Until the access filters granted it, it is an HTTP
 * request: `accept()` completes the upgrade, `refuse()` answers it with an HTTP error. Then it carries
 * messages: ws parses what comes in; what goes out is the turn log's pre-built frames.
 */
export class WebSocketConnection implements Connection {
  readonly codec: Codec = 'ws';
  readonly kind: TransportKind;
  readonly address: string;
  readonly port: number;
  owner: ConnectionOwner | null = null;
  /** @internal It answered the last ping (or none was sent yet). */
  alive = true;
  private ws: WebSocket | null = null;
  private state: State = 'upgrading';
  private head: Buffer | null;
  private idleMs = 0;
  private paused = false;
  /** ws closed it for a protocol error: its close frame is on its way, and ws ends the socket after it. */
  private flushing = false;
  private timer: NodeJS.Timeout | null = null;
  private accepted: ((open: boolean) => void) | null = null;
  private written: (() => void) | null = null;

  /** @internal Made by the transport on an upgrade request. */
  constructor(
    private readonly transport: WebSocketTransport,
    /** The HTTP upgrade request (URL, headers, cookies). */
    readonly request: IncomingMessage,
    /** The socket the upgrade came on, and the WebSocket's once upgraded. */
    readonly socket: net.Socket,
    head: Buffer,
    admitBy: number,
  ) {
    this.head = head;
    this.kind = (socket as tls.TLSSocket).encrypted === true ? 'wss' : 'ws';
    this.address = normalizeAddress(socket.remoteAddress);
    this.port = socket.remotePort ?? 0;
    (socket as OwnedSocket)[kConnection] = this;
    // The error listener is on already (attached when the upgrade request came).
    socket.on('close', onSocketClose);
    socket.on('end', onSocketEnd);
    socket.on('timeout', onSocketTimeout);
    this.timer = setTimeout(() => this.admissionTimedOut(), Math.max(0, admitBy - Date.now()));
    this.timer.unref();
  }

  get pending(): number {
    return this.ws === null ? this.socket.writableLength : this.ws.bufferedAmount;
  }

  get writable(): boolean {
    return this.state === 'open' && (this.ws as WebSocket).readyState === WebSocket.OPEN && !this.socket.destroyed;
  }

  write(views: readonly Buffer[]): void {
    const ws = this.ws;
    if (ws === null || this.state !== 'open') return;
    writeFrames(ws, this.socket, views, (this.written ??= () => this.owner?.onWritten()));
  }

  encode(message: Buffer): Buffer {
    return messageFrames(message, this.transport.lines);
  }

  pause(): void {
    this.paused = true;
    this.ws?.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.state === 'open') this.ws?.resume();
  }

  setIdleTimeout(ms: number): void {
    this.idleMs = ms;
    this.socket.setTimeout(ms);
  }

  accept(): Promise<boolean> | boolean {
    const socket = this.socket;
    if (this.state !== 'upgrading' || socket.destroyed || !socket.writable) return false;
    const head = this.head ?? Buffer.alloc(0);
    this.head = null;
    return new Promise<boolean>((resolve) => {
      this.accepted = resolve;
      // When the socket is gone by now, ws destroys it without calling back: 'close' resolves false then.
      try {
        this.transport.upgrader().handleUpgrade(this.request, socket, head, (ws) => this.opened(ws));
      } catch (error) {
        this.transport.host?.log.warn('WebSocket upgrade failed: %s', (error as Error).message);
        socket.destroy();
      }
    });
  }

  refuse(reason: DenyReason): void {
    if (this.state !== 'upgrading') {
      this.destroy();
      return;
    }
    this.state = 'closing';
    this.clearTimer();
    respond(this.socket, statusOf(reason));
  }

  end(reason: ExitReason, graceMs: number): void {
    const ws = this.ws;
    if (this.state !== 'open' || ws === null) {
      if (this.state === 'upgrading') this.destroy();
      return;
    }
    this.state = 'closing';
    if (graceMs <= 0) {
      this.destroy();
      return;
    }
    // The close frame goes after what was written; ws ends the socket once the client answers it.
    if (ws.readyState === WebSocket.OPEN) ws.close(CLOSE_CODES[reason], reason);
    this.armTimer(graceMs, () => this.destroy());
  }

  destroy(reset = false): void {
    if (this.state === 'closed') return;
    if (this.flushing && !this.socket.destroyed) {
      // ws closed it for a protocol error and ends the socket once its close frame (1002, 1007, 1009) is out:
      // let that frame reach the client rather than reset the connection under it.
      this.flushing = false;
      this.armTimer(CLOSE_FLUSH_MS, () => this.destroy());
      return;
    }
    this.state = 'closing';
    if (reset) resetSocket(this.socket);
    if (this.ws !== null) this.ws.terminate();
    else this.socket.destroy();
  }

  /** @internal The WebSocket is open: it joins the transport's pings, and what waited for it goes. */
  opened(ws: WebSocket): void {
    if (this.state !== 'upgrading') {
      ws.terminate();
      return;
    }
    this.ws = ws;
    this.state = 'open';
    this.clearTimer();
    (ws as OwnedWebSocket)[kConnection] = this;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('error', onWebSocketError);
    // ws turned the socket's timeout off when it took the socket.
    if (this.idleMs > 0) this.socket.setTimeout(this.idleMs);
    if (this.paused) ws.pause();
    this.transport.opened(this);
    const accepted = this.accepted;
    this.accepted = null;
    accepted?.(true);
    // Sends made while it was upgrading (an access filter's greeting) waited in its queue: write them now.
    this.owner?.onWritten();
  }

  /** @internal ws found a protocol error and sent its close frame: the client leaves. */
  protocolError(error: Error & { code?: string }): void {
    this.flushing = true;
    const tooLong = error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
    const reason: ExitReason = tooLong ? 'line-too-long' : 'protocol-error';
    const coded = withCode(new Error(error.message, { cause: error }), tooLong ? 'ERR_LINE_TOO_LONG' : 'ERR_PROTOCOL');
    this.owner?.onError(coded, reason);
  }

  /** @internal A ping round: one that did not answer the last ping leaves. */
  heartbeat(interval: number): void {
    const ws = this.ws;
    if (ws === null || ws.readyState !== WebSocket.OPEN) return;
    if (!this.alive) {
      const error = withCode(new Error(`no pong within ${interval} ms`), 'ERR_PING_TIMEOUT');
      this.owner?.onError(error, 'ping-timeout');
      return;
    }
    this.alive = false;
    ws.ping();
  }

  /** @internal The socket closed. */
  closed(): void {
    this.state = 'closed';
    this.clearTimer();
    this.head = null;
    this.transport.closed(this);
    const accepted = this.accepted;
    this.accepted = null;
    accepted?.(false);
    const owner = this.owner;
    this.owner = null;
    this.written = null;
    owner?.onClose();
  }

  private admissionTimedOut(): void {
    this.timer = null;
    if (this.state !== 'upgrading') return;
    this.transport.host?.log.info('WebSocket upgrade from %s:%d timed out', this.address, this.port);
    this.state = 'closing';
    respond(this.socket, 408);
  }

  private armTimer(ms: number, then: () => void): void {
    this.clearTimer();
    this.timer = setTimeout(then, ms);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

// ---------------------------------------------------------------------------------------------- the transport

/** A socket of the transport's own port before its upgrade request: its gate pass and its deadline. */
interface Arrival {
  readonly pass: GatePass;
  readonly refusal: DenyReason | null;
  readonly admitBy: number;
  handed: boolean;
  timer: NodeJS.Timeout | null;
}
const kArrival = Symbol('arrival');
type ArrivingSocket = net.Socket & { [kArrival]?: Arrival };

/**
 * WebSocket clients on a path of a user's http/https server, or on a port of their own (plain HTTP requests
 * to it get a short 404 or 426 answer). Create with {@link websocket} and give it to `mux.listen()`.
 */
export class WebSocketTransport implements Transport {
  /** @internal */ host: TransportHost | null = null;
  private readonly path: string;
  private readonly origins: ReadonlySet<string> | null;
  private readonly pingInterval: number;
  private readonly handshakeTimeout: number;
  private readonly compression: CompressionOptions | false;
  private netServer: net.Server | null = null;
  private secure = false;
  /** Sockets of its own port that sent no upgrade request yet. */
  private readonly arriving = new Set<net.Socket>();
  /** Upgraded connections, for pings. */
  private readonly open = new Set<WebSocketConnection>();
  private wss: WebSocketServer | null = null;
  private wssMaxPayload = -1;
  private pingTimer: NodeJS.Timeout | null = null;
  private listening = false;
  /** @internal True in line framing (messages are lines, sent as text frames). */
  lines = false;

  constructor(private readonly options: WebSocketOptions = {}) {
    const { server, port, path = '/', origins, pingInterval, handshakeTimeout, compression } = options;
    if (server !== undefined && (typeof server !== 'object' || server === null || typeof server.on !== 'function')) {
      throw invalidArgument('server must be an http or https server');
    }
    if (server !== undefined && port !== undefined)
      throw invalidArgument('give websocket() a server or a port, not both');
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
      throw invalidArgument(`port must be an integer from 0 to 65535; got ${String(port)}`);
    }
    if (typeof path !== 'string' || !path.startsWith('/')) throw invalidArgument(`path must start with /; got ${path}`);
    if (origins !== undefined && (!Array.isArray(origins) || origins.some((origin) => typeof origin !== 'string'))) {
      throw invalidArgument('origins must be a list of origins such as https://chat.example.com');
    }
    this.path = path;
    this.origins = origins === undefined ? null : new Set(origins.map(normalizeOrigin));
    this.pingInterval = checkMs('pingInterval', pingInterval, PING_INTERVAL);
    this.handshakeTimeout = checkMs('handshakeTimeout', handshakeTimeout, HANDSHAKE_TIMEOUT);
    this.compression =
      compression === true ? {} : compression === undefined || compression === false ? false : compression;
  }

  /** `'wss'` when its clients come over TLS, else `'ws'`. */
  get kind(): TransportKind {
    return this.secure ? 'wss' : 'ws';
  }

  async listen(host: TransportHost): Promise<net.AddressInfo | string> {
    if (this.listening)
      throw withCode(new Error('this WebSocket transport is listening already'), 'ERR_ALREADY_LISTENING');
    this.host = host;
    this.lines = host.framing === lineFraming;
    const user = this.options.server;
    if (user !== undefined) {
      this.secure = user instanceof tls.Server;
      user.on('upgrade', this.onUpgrade);
      this.listening = true;
      this.startPings();
      const address = user.address();
      return address ?? '';
    }
    const tlsOptions =
      this.options.tls === undefined ? host.tls : this.options.tls === false ? undefined : this.options.tls;
    const secureContext = tlsOptions === undefined ? null : tls.createSecureContext(tlsOptions);
    this.secure = secureContext !== null;
    const http = createHttpServer((request, response) => {
      // Not an upgrade: this port serves WebSocket clients only.
      const status = pathOf(request) === this.path ? 426 : 404;
      const body = `${STATUS_CODES[status]}\n`;
      response.writeHead(status, {
        Connection: 'close',
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        ...(status === 426 ? { Upgrade: 'websocket' } : {}),
      });
      response.end(body);
    });
    http.on('upgrade', this.onUpgrade);
    const server = net.createServer((socket) => this.onConnection(socket, http, secureContext, tlsOptions));
    this.netServer = server;
    const { port = 0, host: interfaceName, backlog } = this.options;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        this.netServer = null;
        const why = error.code === 'EADDRINUSE' ? 'address already in use' : error.message;
        reject(
          Object.assign(new Error(`cannot listen on ${interfaceName ?? 'all interfaces'} port ${port}: ${why}`), {
            cause: error,
            code: error.code ?? 'ERR_LISTEN',
          }),
        );
      };
      server.once('error', onError);
      server.listen({ port, host: interfaceName, backlog }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (error) => host.report(error));
    this.listening = true;
    this.startPings();
    return server.address() ?? '';
  }

  address(): net.AddressInfo | string | null {
    if (!this.listening) return null;
    return (this.netServer ?? this.options.server)?.address() ?? null;
  }

  close(): Promise<void> {
    this.listening = false;
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.options.server?.off('upgrade', this.onUpgrade);
    for (const socket of this.arriving) socket.destroy();
    this.arriving.clear();
    const server = this.netServer;
    this.netServer = null;
    if (server === null) return Promise.resolve();
    return new Promise((resolve) => {
      if (server.listening) server.close(() => resolve());
      else resolve();
    });
  }

  /** @internal The ws server that completes upgrades, with `maxPayload` following `maxMessageBytes`. */
  upgrader(): WebSocketServer {
    const settings = (this.host as TransportHost).settings;
    // A line may come with its terminator: it is not counted in maxMessageBytes.
    const maxPayload = settings.maxMessageBytes + (this.lines ? 2 : 0);
    if (this.wss === null || this.wssMaxPayload !== maxPayload) {
      const compression = this.compression;
      this.wss = new WebSocketServer({
        noServer: true,
        clientTracking: false,
        maxPayload,
        perMessageDeflate: compression === false ? false : { threshold: 1024, ...compression },
      });
      this.wssMaxPayload = maxPayload;
    }
    return this.wss;
  }

  /** @internal */
  opened(connection: WebSocketConnection): void {
    this.open.add(connection);
  }

  /** @internal */
  closed(connection: WebSocketConnection): void {
    this.open.delete(connection);
  }

  private startPings(): void {
    const interval = this.pingInterval;
    if (interval === 0) return;
    this.pingTimer = setInterval(() => {
      for (const connection of this.open) connection.heartbeat(interval);
    }, interval);
    this.pingTimer.unref();
  }

  /** A connection to its own port: counted by the gate before its handshake, and timed from now. */
  private onConnection(
    raw: net.Socket,
    http: HttpServer,
    secureContext: tls.SecureContext | null,
    tlsOptions: TlsServerOptions | undefined,
  ): void {
    const host = this.host;
    if (host === null || host.destroyed) {
      raw.destroy();
      return;
    }
    const { pass, refusal } = host.gate.enter(normalizeAddress(raw.remoteAddress));
    const arrival: Arrival = { pass, refusal, admitBy: Date.now() + this.handshakeTimeout, handed: false, timer: null };
    const socket: net.Socket =
      secureContext === null
        ? raw
        : new tls.TLSSocket(raw, {
            isServer: true,
            secureContext,
            requestCert: tlsOptions?.requestCert,
            rejectUnauthorized: tlsOptions?.rejectUnauthorized,
            SNICallback: tlsOptions?.SNICallback,
          });
    (socket as ArrivingSocket)[kArrival] = arrival;
    this.arriving.add(socket);
    socket.on('error', onSocketError);
    arrival.timer = setTimeout(() => socket.destroy(), this.handshakeTimeout);
    arrival.timer.unref();
    socket.once('close', () => {
      this.arriving.delete(socket);
      if (arrival.timer !== null) clearTimeout(arrival.timer);
      if (!arrival.handed) host.gate.leave(pass);
    });
    if (secureContext === null) {
      http.emit('connection', socket);
      return;
    }
    const tlsSocket = socket as tls.TLSSocket;
    tlsSocket.once('secure', () => {
      if (tlsOptions?.requestCert === true && tlsOptions.rejectUnauthorized !== false && !tlsSocket.authorized) {
        socket.destroy();
        return;
      }
      tlsSocket.disableRenegotiation();
      http.emit('connection', socket);
    });
  }

  /** An HTTP upgrade request: path, gate, Origin, then the access filters (through the host). */
  private readonly onUpgrade = (request: IncomingMessage, duplex: unknown, head: Buffer): void => {
    const socket = duplex as net.Socket;
    // Node removed its own listeners: an error now would be uncaught.
    socket.on('error', onSocketError);
    const host = this.host;
    if (host === null || !this.listening) {
      socket.destroy();
      return;
    }
    if (pathOf(request) !== this.path) {
      // On a user's server, another upgrade listener may serve that path.
      const user = this.options.server;
      if (user !== undefined && user.listenerCount('upgrade') > 1) {
        socket.off('error', onSocketError);
        return;
      }
      respond(socket, 404);
      return;
    }
    const bad = malformed(request);
    if (bad !== null) {
      respond(socket, bad.status, bad.headers);
      return;
    }
    const arrival = (socket as ArrivingSocket)[kArrival];
    let pass: GatePass;
    let refusal: DenyReason | null;
    let admitBy: number;
    if (arrival !== undefined) {
      ({ pass, refusal, admitBy } = arrival);
      arrival.handed = true;
      if (arrival.timer !== null) clearTimeout(arrival.timer);
      arrival.timer = null;
      this.arriving.delete(socket);
    } else {
      ({ pass, refusal } = host.gate.enter(normalizeAddress(socket.remoteAddress)));
      admitBy = Date.now() + this.handshakeTimeout;
    }
    const connection = new WebSocketConnection(this, request, socket, head, admitBy);
    if (refusal !== null) host.refuse(connection, pass, refusal);
    else if (host.destroyed) host.refuse(connection, pass, 'destroyed');
    else if (!this.originAllowed(request)) host.refuse(connection, pass, 'origin');
    else host.adopt(connection, pass);
  };

  private originAllowed(request: IncomingMessage): boolean {
    if (this.origins === null) return true;
    const origin = request.headers.origin ?? request.headers['sec-websocket-origin'];
    if (origin === undefined) return true; // no browser page sent it
    return this.origins.has(normalizeOrigin(Array.isArray(origin) ? origin[0] : origin));
  }
}

function checkMs(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) throw invalidArgument(`${name} must be a number of ms >= 0; got ${value}`);
  return value;
}

/**
 * A WebSocket transport for `mux.listen()`: on a path of your http/https server, or on a port of its own.
 * @example
 * await mux.listen(websocket({ server: httpServer, path: '/chat', origins: ['https://chat.example.com'] }));
 * await mux.listen(websocket({ port: 8080 })); // ws://host:8080/
 */
export function websocket(options: WebSocketOptions = {}): WebSocketTransport {
  return new WebSocketTransport(options);
}
