/**
 * Wire adapters of the load generator: raw lines, Redis pub/sub (RESP) and NATS (text protocol).
 *
 * Each delivery of a protocol is the payload (one generator message) between a fixed prefix and suffix, so
 * the worker's hot loop checks deliveries by position and calls `parse` only for anything else: handshake
 * replies, PINGs, publish acknowledgements, or data that is not where it should be.
 */

export type ProtocolName = 'line' | 'redis' | 'nats';

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
  /** The handshake completed (Redis: subscription confirmed; NATS: PONG to our PING). */
  ready(): void;
  /** The server acknowledged a publish. */
  reply(): void;
  /** The server sent PING: answer with the protocol's `pong` bytes. */
  ping(): void;
  /** Bytes that could not be parsed, or an error reply. */
  malformed(what: string): void;
}

export interface Protocol {
  readonly name: ProtocolName;
  /** Subscribers also receive their own publications (and must not count them). */
  readonly selfDelivery: boolean;
  /** A connection cannot both subscribe and publish: in all-mode every client needs a second connection. */
  readonly separatePublisher: boolean;
  /** Bytes after each delivered payload. */
  readonly deliverySuffixBytes: number;
  /** The bytes that precede every delivered payload of `size` bytes. */
  deliveryPrefix(size: number): Buffer;
  /** The bytes that precede every published payload of `size` bytes. */
  publishPrefix(size: number): Buffer;
  /** The bytes that follow every published payload. */
  readonly publishSuffix: Buffer;
  /** What a new connection sends first. `echo`: whether it wants its own publications back. */
  handshake(role: Role, echo: boolean): Buffer;
  /** Whether the connection must wait for `ready()` before it takes part. */
  awaitsReady(role: Role): boolean;
  /** The answer to a PING. */
  readonly pong: Buffer;
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
  deliverySuffixBytes: 0,
  deliveryPrefix: () => Buffer.alloc(0),
  publishPrefix: () => Buffer.alloc(0),
  publishSuffix: Buffer.alloc(0),
  handshake: () => Buffer.alloc(0),
  awaitsReady: () => false,
  pong: Buffer.alloc(0),
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

function resp(...parts: string[]): Buffer {
  return Buffer.from(`*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`);
}

/** Redis pub/sub: SUBSCRIBE on receiving connections, PUBLISH on sending ones (never the same connection). */
export const redisProtocol: Protocol = {
  name: 'redis',
  selfDelivery: true,
  separatePublisher: true,
  deliverySuffixBytes: 2,
  deliveryPrefix: (size) => Buffer.from(`*3\r\n$7\r\nmessage\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n$${size}\r\n`),
  publishPrefix: (size) => Buffer.from(`*3\r\n$7\r\nPUBLISH\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n$${size}\r\n`),
  publishSuffix: Buffer.from('\r\n'),
  handshake: (role) => (role.receives ? resp('SUBSCRIBE', CHANNEL) : Buffer.alloc(0)),
  awaitsReady: (role) => role.receives,
  pong: Buffer.alloc(0),
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

/** NATS text protocol: CONNECT, SUB, PUB; parses MSG, answers PING; PONG to our PING ends the handshake. */
export const natsProtocol: Protocol = {
  name: 'nats',
  selfDelivery: false,
  separatePublisher: false,
  deliverySuffixBytes: 2,
  deliveryPrefix: (size) => Buffer.from(`MSG ${CHANNEL} 1 ${size}\r\n`),
  publishPrefix: (size) => Buffer.from(`PUB ${CHANNEL} ${size}\r\n`),
  publishSuffix: Buffer.from('\r\n'),
  handshake(role, echo) {
    const connect = `CONNECT ${JSON.stringify({ verbose: false, pedantic: false, echo })}\r\n`;
    return Buffer.from(`${connect}${role.receives ? `SUB ${CHANNEL} 1\r\n` : ''}PING\r\n`);
  },
  awaitsReady: () => true,
  pong: Buffer.from('PONG\r\n'),
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
    if (op === 'PING') sink.ping();
    else if (op === 'PONG') sink.ready();
    else if (op === '-ERR') sink.malformed(`nats error: ${buf.toString('latin1', off, lineEnd)}`);
    else if (op !== '+OK' && op !== 'INFO')
      sink.malformed(`unexpected NATS line: ${buf.toString('latin1', off, Math.min(lineEnd, off + 40))}`);
    return nl + 1 - off;
  },
};

export function protocolNamed(name: string): Protocol {
  switch (name) {
    case 'line':
      return lineProtocol;
    case 'redis':
      return redisProtocol;
    case 'nats':
      return natsProtocol;
    default:
      throw new RangeError(`unknown protocol ${name}: line, redis or nats`);
  }
}
