import { createHash, randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { WebSocket, type ClientOptions } from 'ws';
import { Multiplexer, type Client, type MultiplexerOptions } from '../../lib';
import { websocket, type WebSocketOptions } from '../../lib/ws';
import { onTeardown, waitFor } from './net';
import { parseFrames, type ParsedFrame } from './ws-frames';

/** One message a WebSocket test client received. */
export interface Received {
  readonly data: Buffer;
  readonly binary: boolean;
}

/** A real `ws` client that records everything: messages, how it closed, or the HTTP answer that refused it. */
export class WsTestClient {
  readonly ws: WebSocket;
  readonly messages: Received[] = [];
  opened = false;
  closed = false;
  closeCode: number | null = null;
  closeReason = '';
  /** The HTTP status of a refused upgrade. */
  status: number | null = null;
  error: Error | null = null;
  pings = 0;
  /** The client's own port (to find its server side). */
  localPort = 0;

  constructor(url: string, options: ClientOptions = {}) {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    this.ws = ws;
    ws.on('upgrade', (response) => (this.localPort = response.socket.localPort ?? 0));
    ws.on('open', () => (this.opened = true));
    ws.on('message', (data: Buffer, binary: boolean) => this.messages.push({ data, binary }));
    ws.on('ping', () => (this.pings += 1));
    ws.on('unexpected-response', (_request, response) => {
      this.status = response.statusCode ?? 0;
      response.resume();
      ws.terminate();
    });
    ws.on('error', (error) => (this.error = error));
    const closing = new Promise<void>((resolve) =>
      ws.on('close', (code, reason) => {
        this.closed = true;
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
      }),
    );
    onTeardown(() => {
      ws.terminate();
      return closing;
    });
  }

  /** Connects and waits until open. */
  static async connect(url: string, options: ClientOptions = {}): Promise<WsTestClient> {
    const client = new WsTestClient(url, options);
    await waitFor(() => client.opened || client.closed, `${url} to open`, 10_000);
    if (!client.opened) throw new Error(`${url} did not open: ${client.status ?? client.error?.message}`);
    return client;
  }

  /** Tries to connect, expecting a refusal; resolves with the HTTP status of the answer. */
  static async refused(url: string, options: ClientOptions = {}): Promise<number> {
    const client = new WsTestClient(url, options);
    await waitFor(() => client.closed, `${url} to be refused`, 10_000);
    if (client.opened) throw new Error(`${url} opened: it was expected to be refused`);
    return client.status ?? 0;
  }

  /** The text messages, as strings. */
  get texts(): string[] {
    return this.messages.filter((message) => !message.binary).map((message) => message.data.toString('utf8'));
  }

  waitForMessages(count: number, timeout = 5000): Promise<void> {
    return waitFor(() => this.messages.length >= count, `${count} messages (have ${this.messages.length})`, timeout);
  }

  /** Waits until a text message equal to `text` came. */
  waitForText(text: string, timeout = 5000): Promise<void> {
    return waitFor(
      () => this.texts.includes(text),
      `a message ${JSON.stringify(text)} (have ${JSON.stringify(this.texts.slice(-5))})`,
      timeout,
    );
  }

  waitForClose(timeout = 5000): Promise<void> {
    return waitFor(() => this.closed, 'the WebSocket to close', timeout);
  }

  send(data: string | Buffer, binary = typeof data !== 'string'): Promise<void> {
    return new Promise((resolve, reject) =>
      this.ws.send(data, { binary }, (error) => (error ? reject(error) : resolve())),
    );
  }
}

/** A multiplexer with a TCP port and a WebSocket port of its own on 127.0.0.1, destroyed after the test. */
export async function startWsMux<S extends object = Record<string, unknown>>(
  options: MultiplexerOptions = {},
  wsOptions: WebSocketOptions = {},
  setup?: (mux: Multiplexer<S>) => void,
): Promise<{ mux: Multiplexer<S>; port: number; wsPort: number; url: string }> {
  const mux = new Multiplexer<S>({ debugLevel: 'critical', ...options });
  setup?.(mux);
  onTeardown(() => mux.destroy({ timeout: 200 }));
  const tcp = await mux.listen({ port: 0, host: '127.0.0.1' });
  const ws = (await mux.listen(websocket({ port: 0, host: '127.0.0.1', ...wsOptions }))) as net.AddressInfo;
  return { mux, port: tcp.port, wsPort: ws.port, url: `ws://127.0.0.1:${ws.port}${wsOptions.path ?? '/'}` };
}

/** The server's view of a WebSocket test client, once it joined. */
export async function wsJoined<S extends object>(mux: Multiplexer<S>, client: WsTestClient): Promise<Client<S>> {
  let found: Client<S> | undefined;
  await waitFor(() => {
    found = [...mux.clients].find((candidate) => candidate.transport !== 'tcp' && candidate.port === client.localPort);
    return found !== undefined;
  }, `the WebSocket client on port ${client.localPort} to join`);
  return found as Client<S>;
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A client frame built by hand: any opcode, RSV bits, FIN, masked or not (to break the protocol on purpose). */
export function handFrame(
  opcode: number,
  payload: Buffer,
  {
    fin = true,
    mask = true,
    rsv = 0,
    length = payload.length,
  }: { fin?: boolean; mask?: boolean; rsv?: number; length?: number } = {},
): Buffer {
  const head: number[] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const m = mask ? 0x80 : 0;
  let extended = Buffer.alloc(0);
  if (length < 126) head.push(m | length);
  else if (length < 65536) {
    head.push(m | 126);
    extended = Buffer.alloc(2);
    extended.writeUInt16BE(length);
  } else {
    head.push(m | 127);
    extended = Buffer.alloc(8);
    extended.writeBigUInt64BE(BigInt(length));
  }
  if (!mask) return Buffer.concat([Buffer.from(head), extended, payload]);
  const key = randomBytes(4);
  key[0] |= 1;
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i += 1) masked[i] ^= key[i & 3];
  return Buffer.concat([Buffer.from(head), extended, key, masked]);
}

/**
 * A WebSocket client made by hand on a raw socket: it does the upgrade, then the test writes whatever bytes
 * it likes and reads the server's frames back. It can stop reading, reset, or send half a frame.
 */
export class RawWsClient {
  readonly chunks: Buffer[] = [];
  closed = false;
  status = 0;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.chunks.push(chunk));
    socket.on('error', () => undefined);
    const closing = new Promise<void>((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        resolve();
      }),
    );
    onTeardown(() => {
      socket.destroy();
      return closing;
    });
  }

  /** Connects and upgrades; resolves once the 101 came (or rejects with the answer it got instead). */
  static async upgrade(port: number, path = '/', headers: Record<string, string> = {}): Promise<RawWsClient> {
    const socket = net.connect(port, '127.0.0.1');
    const client = new RawWsClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const key = randomBytes(16).toString('base64');
    const extra = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    );
    await waitFor(() => client.headEnd() !== -1 || client.closed, 'an answer to the upgrade');
    const head = client.head();
    client.status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
    if (client.status !== 101) throw new Error(`upgrade refused: ${head.split('\r\n')[0]}`);
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    if (!head.includes(`Sec-WebSocket-Accept: ${accept}`)) throw new Error('bad Sec-WebSocket-Accept');
    return client;
  }

  private headEnd(): number {
    return Buffer.concat(this.chunks).indexOf('\r\n\r\n');
  }

  private head(): string {
    const bytes = Buffer.concat(this.chunks);
    return bytes.subarray(0, this.headEnd()).toString('latin1');
  }

  /** The frames received after the 101 (whole ones: a partial frame at the end is left out). */
  frames(): ParsedFrame[] {
    const bytes = Buffer.concat(this.chunks);
    const body = bytes.subarray(this.headEnd() + 4);
    return parseFrames(body.subarray(0, lastWholeFrameEnd(body)));
  }

  /** The close frame's code, once one came. */
  closeCode(): number | null {
    const close = this.frames().find((frame) => frame.opcode === 0x8);
    return close === undefined ? null : close.payload.readUInt16BE(0);
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }

  waitForClose(timeout = 5000): Promise<void> {
    return waitFor(() => this.closed, 'the raw WebSocket to close', timeout);
  }
}

function lastWholeFrameEnd(bytes: Buffer): number {
  let at = 0;
  for (;;) {
    if (bytes.length - at < 2) return at;
    let length = bytes[at + 1] & 0x7f;
    let header = 2;
    if (length === 126) {
      if (bytes.length - at < 4) return at;
      length = bytes.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (bytes.length - at < 10) return at;
      length = Number(bytes.readBigUInt64BE(at + 2));
      header = 10;
    }
    if (at + header + length > bytes.length) return at;
    at += header + length;
  }
}
