import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { invalidArgument, withCode } from '../errors';
import type { TlsServerOptions } from '../options';
import type { ListenOptions } from '../types';
import { normalizeAddress, type Transport, type TransportHost, type TransportKind } from './connection';
import { StreamConnection } from './stream';

/** Default time a TLS client has to finish its handshake. */
const TLS_HANDSHAKE_TIMEOUT = 10_000;
/** Default file mode of a Unix socket: only its owner may connect. */
export const DEFAULT_SOCKET_MODE = 0o600;

/**
 * TCP, TLS and Unix-socket clients: one `net.Server`. TLS is layered on each accepted socket here rather than
 * by `tls.Server`, so that connections in their handshake pass the gate first, time out, and are closed by
 * `close()`.
 */
export class StreamTransport implements Transport {
  readonly kind: TransportKind;
  private server: net.Server | null = null;
  private readonly handshaking = new Set<tls.TLSSocket>();
  private readonly secureContext: tls.SecureContext | null;
  private host: TransportHost | null = null;

  /**
   * @param where the port, host or path to listen on
   * @param tlsOptions TLS settings, or null for plain connections
   */
  constructor(
    private readonly where: ListenOptions,
    private readonly tlsOptions: TlsServerOptions | null,
  ) {
    // Built now so that a bad key or certificate fails at listen(), not at the first connection.
    this.secureContext = tlsOptions === null ? null : tls.createSecureContext(tlsOptions);
    this.kind = tlsOptions !== null ? 'tls' : where.path !== undefined ? 'unix' : 'tcp';
  }

  async listen(host: TransportHost): Promise<net.AddressInfo | string> {
    this.host = host;
    const where = this.where;
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
    this.server = server;
    if (where.path !== undefined) await removeStaleSocket(where.path);
    const mode = where.mode ?? DEFAULT_SOCKET_MODE;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        this.server = null;
        const place = where.path ?? `${where.host ?? 'all interfaces'} port ${where.port ?? 0}`;
        const why = error.code === 'EADDRINUSE' ? 'address already in use' : error.message;
        reject(
          Object.assign(new Error(`cannot listen on ${place}: ${why}`, { cause: error }), {
            code: error.code ?? 'ERR_LISTEN',
          }),
        );
      };
      server.once('error', onError);
      server.once('listening', () => {
        server.off('error', onError);
        resolve();
      });
      if (where.path !== undefined) {
        // The socket file is created by bind() inside listen(): a umask set around it gives the file its mode
        // from the start, with no moment in which others could connect. chmod then sets exactly `mode`.
        const previous = setUmask(~mode & 0o777);
        try {
          server.listen({ path: where.path, backlog: where.backlog });
        } finally {
          if (previous !== null) setUmask(previous);
        }
      } else {
        server.listen({ port: where.port ?? 0, host: where.host, backlog: where.backlog });
      }
    });
    if (where.path !== undefined) chmodSync(where.path, mode);
    server.on('error', (error) => host.report(error));
    return server.address() ?? '';
  }

  address(): net.AddressInfo | string | null {
    return this.server?.address() ?? null;
  }

  close(): Promise<void> {
    const server = this.server;
    for (const socket of this.handshaking) socket.destroy();
    if (server === null) return Promise.resolve();
    return new Promise((resolve) => {
      if (server.listening) server.close(() => resolve());
      else resolve();
    });
  }

  private onConnection(raw: net.Socket): void {
    const host = this.host;
    if (host === null) return;
    const address = this.kind === 'unix' ? 'local' : normalizeAddress(raw.remoteAddress);
    const { pass, refusal } = host.gate.enter(address);
    if (refusal !== null || host.destroyed || this.secureContext === null) {
      const connection = new StreamConnection(raw, this.kind === 'tls' ? 'tcp' : this.kind);
      if (refusal !== null || host.destroyed) host.refuse(connection, pass, refusal ?? 'destroyed');
      else host.adopt(connection, pass);
      return;
    }
    this.handshake(raw, this.secureContext, host, pass);
  }

  private handshake(
    raw: net.Socket,
    secureContext: tls.SecureContext,
    host: TransportHost,
    pass: ReturnType<TransportHost['gate']['enter']>['pass'],
  ): void {
    const options = this.tlsOptions ?? {};
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext,
      requestCert: options.requestCert,
      rejectUnauthorized: options.rejectUnauthorized,
      ALPNProtocols: options.ALPNProtocols,
      SNICallback: options.SNICallback,
    });
    this.handshaking.add(socket);
    const where = `${normalizeAddress(raw.remoteAddress)}:${raw.remotePort ?? 0}`;
    const fail = (why: string): void => {
      host.log.info('TLS handshake with %s failed: %s', where, why);
      socket.destroy();
    };
    const onEnd = (): void => fail('closed during the handshake');
    const onError = (error: Error): void => fail(error.message);
    const timer = setTimeout(() => fail('timed out'), options.handshakeTimeout ?? TLS_HANDSHAKE_TIMEOUT);
    timer.unref();
    socket.on('end', onEnd);
    socket.on('error', onError);
    let adopted = false;
    socket.once('close', () => {
      clearTimeout(timer);
      this.handshaking.delete(socket);
      if (!adopted) host.gate.leave(pass);
    });
    socket.once('secure', () => {
      clearTimeout(timer);
      this.handshaking.delete(socket);
      if (host.destroyed) return fail('shutting down');
      if (options.requestCert === true && options.rejectUnauthorized !== false && !socket.authorized) {
        return fail(`client certificate rejected: ${String(socket.authorizationError)}`);
      }
      socket.off('end', onEnd);
      socket.off('error', onError);
      // Renegotiation costs the server a full handshake each time and serves no client of ours.
      socket.disableRenegotiation();
      adopted = true;
      host.adopt(new StreamConnection(socket, 'tls', raw), pass);
    });
  }
}

/** Sets the process umask, where this thread may (not in worker threads); returns the previous one or null. */
function setUmask(mask: number): number | null {
  try {
    return process.umask(mask);
  } catch {
    return null;
  }
}

/**
 * A Unix socket file left by a process that is gone blocks listening (EADDRINUSE). It is removed when
 * nothing answers on it; a live one is left alone (listen then fails with EADDRINUSE), and so is anything at
 * that path that is not a socket.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!stats.isSocket()) {
    throw withCode(
      Object.assign(new Error(`cannot listen on ${path}: a file that is not a socket is in the way`), {
        code: 'EADDRINUSE',
      }),
      'ERR_LISTEN',
    );
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.on('error', (error: NodeJS.ErrnoException) =>
      resolve(error.code !== 'ECONNREFUSED' && error.code !== 'ENOENT'),
    );
    probe.once('connect', () => {
      // Something answers: leave politely (a reset could hurt the server that is there) and leave it alone.
      resolve(true);
      probe.resume();
      probe.end();
      setTimeout(() => probe.destroy(), 1000).unref();
    });
  });
  if (!live) {
    try {
      unlinkSync(path);
    } catch {
      // Not ours to remove (a sticky /tmp): listen reports EADDRINUSE.
    }
  }
}

/** Checks and normalizes the options of one `listen()` call. */
export function listenOptions(where: number | string | ListenOptions): ListenOptions {
  if (typeof where === 'number' || (typeof where === 'string' && /^\d+$/.test(where))) {
    return { port: checkPort(Number(where)) };
  }
  if (typeof where === 'string') return { path: where };
  if (typeof where !== 'object' || where === null) {
    throw invalidArgument(`listen() takes a port, a path, { port, host, path } or a Transport; got ${String(where)}`);
  }
  if (where.mode !== undefined && (!Number.isInteger(where.mode) || where.mode < 0 || where.mode > 0o777)) {
    throw invalidArgument(`mode must be a file mode from 0 to 0o777; got ${String(where.mode)}`);
  }
  if (where.path !== undefined) return { ...where, path: String(where.path) };
  return { ...where, port: checkPort(where.port ?? 0) };
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw invalidArgument(`port must be an integer from 0 to 65535; got ${port}`);
  }
  return port;
}
