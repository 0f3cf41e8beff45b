import type { Socket } from 'node:net';
import { withCode } from '../errors';
import type { DenyReason, ExitReason } from '../types';
import { normalizeAddress, type Codec, type Connection, type ConnectionOwner, type TransportKind } from './connection';

const kConnection = Symbol('connection');
type OwnedSocket = Socket & { [kConnection]?: StreamConnection };

// One set of listener functions for every socket: each finds its connection through a symbol, so a
// connection costs no closures of its own (ws's setSocket does the same).
function ownerOf(socket: OwnedSocket): ConnectionOwner | null {
  return socket[kConnection]?.owner ?? null;
}
function onData(this: OwnedSocket, chunk: Buffer): void {
  ownerOf(this)?.onData(chunk, false);
}
function onEnd(this: OwnedSocket): void {
  const connection = this[kConnection];
  if (connection?.lingering === true) return; // the peer answered our FIN: close completes
  connection?.owner?.onEnd();
}
function onError(this: OwnedSocket, error: NodeJS.ErrnoException): void {
  const code = error.code;
  const reason: ExitReason =
    code === 'ECONNRESET' || code === 'EPIPE'
      ? 'reset'
      : code === 'ERR_TLS_RENEGOTIATION_DISABLED' || code === 'ERR_TLS_SESSION_ATTACK'
        ? 'protocol-error'
        : 'error';
  ownerOf(this)?.onError(error, reason);
}
function onClose(this: OwnedSocket): void {
  const connection = this[kConnection];
  if (connection === undefined) return;
  connection.closed();
}
function onTimeout(this: OwnedSocket): void {
  ownerOf(this)?.onIdle();
}
/**
 * A TLS handshake after the first: the client renegotiated. Node's disableRenegotiation() does not act on a
 * TLSSocket layered over an accepted socket (no error is ever raised), so a second handshake cuts it here.
 */
function onSecureAgain(this: OwnedSocket): void {
  const error = withCode(new Error('TLS renegotiation is not allowed'), 'ERR_PROTOCOL');
  ownerOf(this)?.onError(error, 'protocol-error');
}

/**
 * A connection over a stream socket: TCP, TLS or a Unix socket. Writes go straight to the socket; one
 * callback per connection tells the owner when the kernel took them.
 */
export class StreamConnection implements Connection {
  readonly codec: Codec = 'stream';
  readonly request = null;
  readonly address: string;
  readonly port: number;
  owner: ConnectionOwner | null = null;
  /** @internal A polite close is under way: the peer's own EOF ends it. */
  lingering = false;
  private written: (() => void) | null = null;
  private closeTimer: NodeJS.Timeout | null = null;

  /**
   * @param socket what is read and written
   * @param kind its transport
   * @param raw the TCP socket under it (a TLS socket's), which a reset goes to
   */
  constructor(
    readonly socket: Socket,
    readonly kind: TransportKind,
    private readonly raw: Socket = socket,
  ) {
    this.address = kind === 'unix' ? 'local' : normalizeAddress(socket.remoteAddress);
    this.port = socket.remotePort ?? 0;
    (socket as OwnedSocket)[kConnection] = this;
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('timeout', onTimeout);
    if (kind === 'tls') socket.on('secure', onSecureAgain);
    if (kind !== 'unix') socket.setNoDelay(true);
  }

  get pending(): number {
    return this.socket.writableLength;
  }

  get writable(): boolean {
    return !this.socket.destroyed && this.socket.writable && !this.lingering;
  }

  write(views: readonly Buffer[]): void {
    writeViews(this.socket, views, (this.written ??= () => this.owner?.onWritten()));
  }

  encode(message: Buffer): Buffer {
    return message;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    if (!this.lingering) this.socket.resume();
  }

  setIdleTimeout(ms: number): void {
    this.socket.setTimeout(ms);
  }

  accept(): boolean {
    return !this.socket.destroyed;
  }

  refuse(_reason: DenyReason): void {
    this.end('kicked', 0);
  }

  end(reason: ExitReason, graceMs: number): void {
    const socket = this.socket;
    if (this.lingering || socket.destroyed) return;
    if (graceMs <= 0 || !socket.writable) {
      socket.destroy();
      return;
    }
    this.lingering = true;
    this.closeTimer = setTimeout(() => socket.destroy(), graceMs);
    this.closeTimer.unref();
    socket.end();
    if (reason === 'destroy') {
      // Shutting down: close once everything is handed to the kernel.
      socket.once('finish', () => socket.destroy());
      return;
    }
    // A lingering close: read and discard until the peer closes too (or the grace timer fires), so that a
    // client still sending does not get a reset that would wipe out what we told it last.
    socket.removeListener('data', onData);
    socket.resume();
  }

  destroy(reset = false): void {
    if (reset && this.kind !== 'unix') resetSocket(this.raw);
    this.socket.destroy();
  }

  /** @internal The socket closed. */
  closed(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    const owner = this.owner;
    this.owner = null;
    this.written = null;
    owner?.onClose();
  }
}

/** Writes `views` as one system call (corked when more than one); `done` once the last is written. */
export function writeViews(socket: Socket, views: readonly Buffer[], done: () => void): void {
  const count = views.length;
  if (count === 1) {
    socket.write(views[0], done);
    return;
  }
  socket.cork();
  for (let i = 0; i < count - 1; i += 1) socket.write(views[i]);
  socket.write(views[count - 1], done);
  socket.uncork();
}

/**
 * Closes a TCP socket with a reset, discarding its unsent bytes (a plain close leaves them to the kernel, which
 * keeps an orphan socket holding them while the peer does not read).
 */
export function resetSocket(socket: Socket): void {
  // After end(), libuv cannot reset (a shutdown is pending): the caller's plain destroy closes it.
  if (socket.destroyed || socket.connecting || socket.writableEnded) return;
  if (socket.listenerCount('error') === 0) socket.on('error', () => undefined); // a TLS socket's TCP socket
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy(); // not a TCP handle after all
  }
}
