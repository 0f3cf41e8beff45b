/**
 * Wire adapters of the load generator: raw lines, Redis pub/sub (RESP), NATS (text protocol), and
 * WebSocket clients: text frames (`ws-text`, a line without its newline per frame), binary frames
 * (`ws-binary`, the message as is) and Socket.IO events (`socketio`, Engine.IO v4 / Socket.IO v5 over
 * WebSocket, byte for byte what socket.io-client sends with `transports: ['websocket']`).
 *
 * Each delivery of a protocol is the payload (one generator message) between a fixed prefix and suffix, so
 * the worker's hot loop checks deliveries by position and calls `parse` only for anything else: handshake
 * replies, PINGs, publish acknowledgements, or data that is not where it should be.
 */
import {
  type FrameInfo,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  clientFrame,
  headerBytes,
  maskKey,
  readFrame,
  readUpgradeResponse,
  serverFrameHeader,
  upgradeRequest,
} from './ws-wire';
import { SEQ_OFFSET, SID_OFFSET, TS_OFFSET } from './message';

export type ProtocolName = 'line' | 'redis' | 'nats' | 'ws-text' | 'ws-binary' | 'socketio';

/** The protocols of WebSocket clients. */
export const WS_PROTOCOLS: readonly ProtocolName[] = ['ws-text', 'ws-binary', 'socketio'];

/** What one connection does. */
export interface Role {
  /** Subscribes and checks what it receives. */
  readonly receives: boolean;
  /** Publishes messages. */
  readonly sends: boolean;
}

/** What a protocol's parser reports to the connection it parses for. */
export interface FrameSink {
  /** A payload of `length` bytes at `at` (after any nick prefix when stripping). */
  payload(buf: Buffer, at: number, length: number): void;
  /** The handshake completed (Redis: subscription confirmed; NATS: PONG to our PING; WebSocket: 101). */
  ready(): void;
  /** The server acknowledged a publish. */
  reply(): void;
  /** The server asked for an answer (a PING): write `bytes`. */
  answer(bytes: Buffer): void;
  /** The server said it is closing the connection (a WebSocket close frame), and why. */
  closing(why: string): void;
  /** Bytes that could not be parsed, or an error reply. */
  malformed(what: string): void;
}

export interface Protocol {
  readonly name: ProtocolName;
  /** Subscribers also receive their own publications (and must not count them). */
  readonly selfDelivery: boolean;
  /** A connection cannot both subscribe and publish: in all-mode every client needs a second connection. */
  readonly separatePublisher: boolean;
  /** The message's trailing newline travels with it (not in WebSocket text frames nor socket.io events). */
  readonly carriesNewline: boolean;
  /** The bytes that precede every delivered payload of a `size`-byte message. */
  deliveryPrefix(size: number): Buffer;
  /** The bytes that follow every delivered payload. */
  readonly deliverySuffix: Buffer;
  /** Client frames are masked: each sender gets a key, passed to publishFrame and sealStamp. */
  readonly masked: boolean;
  /** What a sender writes to publish `message` (a whole generator message, newline included). */
  publishFrame(message: Buffer, key: Uint8Array | null): Buffer;
  /** Where the message starts in the bytes of publishFrame, for a `size`-byte message. */
  publishOffset(size: number): number;
  /** After the worker stamped a message at `at` of a publish frame: encodes the stamped bytes (masking). */
  readonly sealStamp: ((buf: Buffer, at: number, key: Uint8Array) => void) | null;
  /** Before a delivered message at `at` is read: undoes an encoding of its header bytes, in place. */
  readonly decode: ((buf: Buffer, at: number) => void) | null;
  /** What a new connection sends first. `echo`: whether it wants its own publications back. */
  handshake(role: Role, echo: boolean, authority: string): Buffer;
  /** Whether the connection must wait for `ready()` before it takes part. */
  awaitsReady(role: Role): boolean;
  /** Parses one frame at `off`; returns the bytes used, or 0 when it is not complete yet. */
  parse(buf: Buffer, off: number, end: number, sink: FrameSink, stripPrefix: boolean): number;
}

const NL = 0x0a;
const CR = 0x0d;
const CHANNEL = 'bench';
/** A line without a newline past this many bytes is given up on as malformed. */
const MAX_CONTROL_BYTES = 1 << 20;

function indexOfByte(buf: Buffer, byte: number, from: number, end: number): number {
  for (let i = from; i < end; i += 1) if (buf[i] === byte) return i;
  return -1;
}

/** Skips a line that cannot be understood: to its newline, or everything when it is hopelessly long. */
function skipLine(buf: Buffer, off: number, end: number, sink: FrameSink, what: string): number {
  const nl = indexOfByte(buf, NL, off, end);
  if (nl < 0 && end - off < MAX_CONTROL_BYTES) return 0;
  sink.malformed(what);
  return nl < 0 ? end - off : nl + 1 - off;
}

/** Where the payload starts in a line that a chat filter prefixed with `nick: `, or -1. */
export function afterNick(buf: Buffer, off: number, end: number): number {
  const limit = Math.min(end - 1, off + 64);
  for (let i = off; i < limit; i += 1) if (buf[i] === 0x3a && buf[i + 1] === 0x20) return i + 2;
  return -1;
}

function parseDecimal(buf: Buffer, from: number, to: number): number {
  let value = 0;
  let digits = 0;
  for (let i = from; i < to; i += 1) {
    const d = buf[i] - 0x30;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
    digits += 1;
  }
  return digits > 0 ? value : -1;
}

/** Raw TCP lines: what a broadcaster forwards is exactly what was sent. */
export const lineProtocol: Protocol = {
  name: 'line',
  selfDelivery: false,
  separatePublisher: false,
  carriesNewline: true,
  deliveryPrefix: () => Buffer.alloc(0),
  deliverySuffix: Buffer.alloc(0),
  masked: false,
  publishFrame: (message) => Buffer.from(message),
  publishOffset: () => 0,
  sealStamp: null,
  decode: null,
  handshake: () => Buffer.alloc(0),
  awaitsReady: () => false,
  parse(buf, off, end, sink, stripPrefix) {
    const nl = indexOfByte(buf, NL, off, end);
    if (nl < 0) return end - off < MAX_CONTROL_BYTES ? 0 : skipLine(buf, off, end, sink, 'line without newline');
    let at = off;
    if (stripPrefix) {
      const p = afterNick(buf, off, nl + 1);
      if (p < 0) {
        sink.malformed('line without a nick prefix');
        return nl + 1 - off;
      }
      at = p;
    }
    sink.payload(buf, at, nl + 1 - at);
    return nl + 1 - off;
  },
};

const CRLF = '\r\n';

function redisPublishPrefix(size: number): Buffer {
  return Buffer.from(`*3\r\n$7\r\nPUBLISH\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n$${size}\r\n`);
}

function resp(...parts: string[]): Buffer {
  return Buffer.from(`*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`);
}

/** Redis pub/sub: SUBSCRIBE on receiving connections, PUBLISH on sending ones (never the same connection). */
export const redisProtocol: Protocol = {
  name: 'redis',
  selfDelivery: true,
  separatePublisher: true,
  carriesNewline: true,
  deliveryPrefix: (size) => Buffer.from(`*3\r\n$7\r\nmessage\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n$${size}\r\n`),
  deliverySuffix: Buffer.from(CRLF),
  masked: false,
  publishFrame: (message) => Buffer.concat([redisPublishPrefix(message.length), message, Buffer.from(CRLF)]),
  publishOffset: (size) => redisPublishPrefix(size).length,
  sealStamp: null,
  decode: null,
  handshake: (role) => (role.receives ? resp('SUBSCRIBE', CHANNEL) : Buffer.alloc(0)),
  awaitsReady: (role) => role.receives,
  parse(buf, off, end, sink) {
    const type = buf[off];
    if (type === 0x3a || type === 0x2b || type === 0x2d) {
      // ':' integer (publish reply), '+' simple string, '-' error
      const nl = indexOfByte(buf, NL, off, end);
      if (nl < 0) return 0;
      if (type === 0x3a) sink.reply();
      if (type === 0x2d) sink.malformed(`redis error: ${buf.toString('latin1', off, nl - 1)}`);
      return nl + 1 - off;
    }
    if (type !== 0x2a) return skipLine(buf, off, end, sink, 'unexpected RESP type');
    // '*' array of bulk strings / integers: a push (message, subscribe confirmation).
    let nl = indexOfByte(buf, NL, off, end);
    if (nl < 0) return 0;
    const count = parseDecimal(buf, off + 1, nl - 1);
    if (count < 0) return skipLine(buf, off, end, sink, 'bad RESP array');
    let at = nl + 1;
    const starts: number[] = [];
    const lengths: number[] = [];
    for (let i = 0; i < count; i += 1) {
      if (at >= end) return 0;
      nl = indexOfByte(buf, NL, at, end);
      if (nl < 0) return 0;
      if (buf[at] === 0x24) {
        const length = parseDecimal(buf, at + 1, nl - 1);
        if (length < 0) return skipLine(buf, off, end, sink, 'bad RESP bulk string');
        if (nl + 1 + length + 2 > end) return 0;
        starts.push(nl + 1);
        lengths.push(length);
        at = nl + 1 + length + 2;
      } else {
        starts.push(at + 1);
        lengths.push(nl - 1 - at - 1);
        at = nl + 1;
      }
    }
    const kind = count >= 1 ? buf.toString('latin1', starts[0], starts[0] + lengths[0]) : '';
    if (kind === 'message' && count === 3) sink.payload(buf, starts[2], lengths[2]);
    else if (kind === 'subscribe') sink.ready();
    return at - off;
  },
};

const NATS_PONG = Buffer.from('PONG\r\n');

/** NATS text protocol: CONNECT, SUB, PUB; parses MSG, answers PING; PONG to our PING ends the handshake. */
export const natsProtocol: Protocol = {
  name: 'nats',
  selfDelivery: false,
  separatePublisher: false,
  carriesNewline: true,
  deliveryPrefix: (size) => Buffer.from(`MSG ${CHANNEL} 1 ${size}\r\n`),
  deliverySuffix: Buffer.from(CRLF),
  masked: false,
  publishFrame: (message) =>
    Buffer.concat([Buffer.from(`PUB ${CHANNEL} ${message.length}\r\n`), message, Buffer.from(CRLF)]),
  publishOffset: (size) => `PUB ${CHANNEL} ${size}\r\n`.length,
  sealStamp: null,
  decode: null,
  handshake(role, echo) {
    const connect = `CONNECT ${JSON.stringify({ verbose: false, pedantic: false, echo })}\r\n`;
    return Buffer.from(`${connect}${role.receives ? `SUB ${CHANNEL} 1\r\n` : ''}PING\r\n`);
  },
  awaitsReady: () => true,
  parse(buf, off, end, sink) {
    const nl = indexOfByte(buf, NL, off, end);
    if (nl < 0) return end - off < MAX_CONTROL_BYTES ? 0 : skipLine(buf, off, end, sink, 'NATS line without newline');
    const lineEnd = buf[nl - 1] === CR ? nl - 1 : nl;
    const op = buf.toString('latin1', off, Math.min(off + 4, lineEnd)).toUpperCase();
    if (op === 'MSG ') {
      // MSG <subject> <sid> [reply-to] <#bytes>
      const fields = buf.toString('latin1', off, lineEnd).split(' ');
      const length = Number(fields[fields.length - 1]);
      if (!Number.isInteger(length) || length < 0) return skipLine(buf, off, end, sink, 'bad NATS MSG');
      if (nl + 1 + length + 2 > end) return 0;
      sink.payload(buf, nl + 1, length);
      return nl + 1 + length + 2 - off;
    }
    if (op === 'PING') sink.answer(NATS_PONG);
    else if (op === 'PONG') sink.ready();
    else if (op === '-ERR') sink.malformed(`nats error: ${buf.toString('latin1', off, lineEnd)}`);
    else if (op !== '+OK' && op !== 'INFO')
      sink.malformed(`unexpected NATS line: ${buf.toString('latin1', off, Math.min(lineEnd, off + 40))}`);
    return nl + 1 - off;
  },
};

// ------------------------------------------------------------------ WebSocket

/** The Socket.IO event every message travels in: `42["m","<message>"]` (Engine.IO message, Socket.IO EVENT). */
const SIO_EVENT = Buffer.from('42["m","');
const SIO_EVENT_END = Buffer.from('"]');
const SIO_CONNECT = Buffer.from('40');
const EIO_PONG = Buffer.from('3');
const SIO_PATH = '/socket.io/?EIO=4&transport=websocket';
/** A message's digits may be a backslash, which JSON would escape: socket.io messages carry `p` instead. */
const BACKSLASH = 0x5c;
const BACKSLASH_STAND_IN = 0x70;

const frame: FrameInfo = {
  fin: false,
  rsv: 0,
  opcode: 0,
  masked: false,
  payloadAt: 0,
  payloadLength: 0,
  frameBytes: 0,
};

type WsKind = 'text' | 'binary' | 'socketio';

function startsWith(buf: Buffer, at: number, prefix: Buffer): boolean {
  for (let i = 0; i < prefix.length; i += 1) if (buf[at + i] !== prefix[i]) return false;
  return true;
}

function decodeSocketIo(buf: Buffer, at: number): void {
  for (let j = SID_OFFSET; j < TS_OFFSET + 8; j += 1) if (buf[at + j] === BACKSLASH_STAND_IN) buf[at + j] = BACKSLASH;
}

function socketIoPacket(buf: Buffer, at: number, n: number, sink: FrameSink): void {
  const type = buf[at];
  const quoted = (): string => JSON.stringify(buf.toString('latin1', at, at + Math.min(n, 60)));
  if (type === 0x34 && n >= 2) {
    // '4': an Engine.IO message carrying a Socket.IO packet.
    const packet = buf[at + 1];
    if (packet === 0x32) {
      const end = at + n - SIO_EVENT_END.length;
      if (
        n >= SIO_EVENT.length + SIO_EVENT_END.length &&
        startsWith(buf, at, SIO_EVENT) &&
        startsWith(buf, end, SIO_EVENT_END)
      ) {
        decodeSocketIo(buf, at + SIO_EVENT.length);
        sink.payload(buf, at + SIO_EVENT.length, n - SIO_EVENT.length - SIO_EVENT_END.length);
      } else sink.malformed(`unexpected socket.io event ${quoted()}`);
    } else if (packet === 0x30) sink.ready();
    else if (packet === 0x31) sink.closing('socket.io DISCONNECT');
    else sink.malformed(`unexpected socket.io packet ${quoted()}`);
  } else if (type === 0x30) sink.answer(clientFrame(OP_TEXT, SIO_CONNECT, maskKey()));
  else if (type === 0x32 && n === 1) sink.answer(clientFrame(OP_TEXT, EIO_PONG, maskKey()));
  else if (type === 0x31) sink.closing('engine.io close');
  else sink.malformed(`unexpected engine.io packet ${quoted()}`);
}

function parseWebSocket(kind: WsKind, buf: Buffer, off: number, end: number, sink: FrameSink): number {
  if (buf[off] === 0x48) {
    // 'H': the answer to the upgrade request (never the first byte of a valid frame).
    const { used, error } = readUpgradeResponse(buf, off, end);
    if (used === 0) return 0;
    if (error !== null) sink.malformed(error);
    else if (kind !== 'socketio') sink.ready();
    return used;
  }
  if (!readFrame(buf, off, end, frame, MAX_CONTROL_BYTES)) return 0;
  if (frame.payloadLength > MAX_CONTROL_BYTES) {
    sink.malformed(`a frame of ${frame.payloadLength} bytes`);
    return end - off;
  }
  const at = frame.payloadAt;
  const n = frame.payloadLength;
  if (frame.masked) sink.malformed('a masked frame from the server');
  else if (frame.rsv !== 0) sink.malformed('RSV bits set, no extension negotiated');
  else if (frame.opcode === OP_TEXT || frame.opcode === OP_BINARY) {
    if (!frame.fin) sink.malformed('a fragmented message');
    else if (kind === 'socketio') {
      if (frame.opcode === OP_TEXT) socketIoPacket(buf, at, n, sink);
      else sink.malformed('a binary frame from socket.io');
    } else if ((frame.opcode === OP_BINARY) !== (kind === 'binary'))
      sink.malformed(`a ${frame.opcode === OP_BINARY ? 'binary' : 'text'} frame where ${kind} frames are expected`);
    else sink.payload(buf, at, n);
  } else if (frame.opcode === OP_PING) sink.answer(clientFrame(OP_PONG, buf.subarray(at, at + n), maskKey()));
  else if (frame.opcode === OP_CLOSE) {
    const code = n >= 2 ? buf.readUInt16BE(at) : 1005;
    sink.closing(`close frame ${code}${n > 2 ? ` ${buf.toString('utf8', at + 2, at + n)}` : ''}`);
  } else if (frame.opcode !== OP_PONG) sink.malformed(`a frame with opcode ${frame.opcode}`);
  return frame.frameBytes;
}

/** Masks the stamped bytes (sequence number and time) of the message at `at`, `phase` bytes into the payload. */
function maskStamp(buf: Buffer, at: number, key: Uint8Array, phase: number, socketIo: boolean): void {
  for (let j = SEQ_OFFSET; j < TS_OFFSET + 8; j += 1) {
    let v = buf[at + j];
    if (socketIo && v === BACKSLASH) v = BACKSLASH_STAND_IN;
    buf[at + j] = v ^ key[(phase + j) & 3];
  }
}

function webSocketProtocol(name: ProtocolName, kind: WsKind): Protocol {
  const opcode = kind === 'binary' ? OP_BINARY : OP_TEXT;
  const socketIo = kind === 'socketio';
  const phase = socketIo ? SIO_EVENT.length : 0;
  /** The message as it travels: without its newline except in binary frames; socket.io: in its event. */
  const payloadOf = (message: Buffer): Buffer => {
    if (kind === 'binary') return Buffer.from(message);
    const line = Buffer.from(message.subarray(0, message.length - 1));
    if (!socketIo) return line;
    for (let i = 0; i < line.length; i += 1) if (line[i] === BACKSLASH) line[i] = BACKSLASH_STAND_IN;
    return Buffer.concat([SIO_EVENT, line, SIO_EVENT_END]);
  };
  const payloadBytes = (size: number): number =>
    kind === 'binary' ? size : size - 1 + (socketIo ? SIO_EVENT.length + SIO_EVENT_END.length : 0);
  return {
    name,
    selfDelivery: false,
    separatePublisher: false,
    carriesNewline: kind === 'binary',
    deliveryPrefix: (size) =>
      Buffer.concat([serverFrameHeader(opcode, payloadBytes(size)), socketIo ? SIO_EVENT : Buffer.alloc(0)]),
    deliverySuffix: socketIo ? SIO_EVENT_END : Buffer.alloc(0),
    masked: true,
    publishFrame: (message, key) => clientFrame(opcode, payloadOf(message), key ?? maskKey()),
    publishOffset: (size) => headerBytes(payloadBytes(size), true) + phase,
    sealStamp: (buf, at, key) => maskStamp(buf, at, key, phase, socketIo),
    decode: socketIo ? decodeSocketIo : null,
    handshake: (_role, _echo, authority) => upgradeRequest(socketIo ? SIO_PATH : '/', authority),
    awaitsReady: () => true,
    parse: (buf, off, end, sink) => parseWebSocket(kind, buf, off, end, sink),
  };
}

/** WebSocket text frames: one line per frame, without its newline. */
export const wsTextProtocol = webSocketProtocol('ws-text', 'text');
/** WebSocket binary frames: the message as is. */
export const wsBinaryProtocol = webSocketProtocol('ws-binary', 'binary');
/** Socket.IO 4 over WebSocket: the line without its newline as the argument of event `m`. */
export const socketIoProtocol = webSocketProtocol('socketio', 'socketio');

export function protocolNamed(name: string): Protocol {
  switch (name) {
    case 'line':
      return lineProtocol;
    case 'redis':
      return redisProtocol;
    case 'nats':
      return natsProtocol;
    case 'ws-text':
      return wsTextProtocol;
    case 'ws-binary':
      return wsBinaryProtocol;
    case 'socketio':
      return socketIoProtocol;
    default:
      throw new RangeError(`unknown protocol ${name}: line, redis, nats, ws-text, ws-binary or socketio`);
  }
}
