/**
 * The load generator's own WebSocket client wire (RFC 6455): the upgrade request and the check of its
 * answer, masked client frames, and reading server frames without allocating. Just what a generator
 * needs to check millions of deliveries per second; a `ws` client costs ~1 µs of CPU per message
 * received, which on a machine shared with the server would cap and compress every figure.
 */
import { createHash, randomBytes } from 'node:crypto';

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** This thread's Sec-WebSocket-Key (one for all its connections: a server cannot tell) and its answer. */
const HANDSHAKE_KEY = randomBytes(16).toString('base64');
const EXPECTED_ACCEPT = createHash('sha1')
  .update(HANDSHAKE_KEY + GUID)
  .digest('base64');

/** Bytes of a frame header for a payload of `length` bytes: 2, 4 or 10, plus 4 when masked. */
export function headerBytes(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

function writeHeader(out: Buffer, opcode: number, length: number, masked: boolean): number {
  out[0] = 0x80 | opcode;
  const m = masked ? 0x80 : 0;
  if (length < 126) {
    out[1] = m | length;
    return 2;
  }
  if (length < 65536) {
    out[1] = m | 126;
    out.writeUInt16BE(length, 2);
    return 4;
  }
  out[1] = m | 127;
  out.writeBigUInt64BE(BigInt(length), 2);
  return 10;
}

/** The header of an unmasked frame with FIN set, as a server sends it. */
export function serverFrameHeader(opcode: number, length: number): Buffer {
  const out = Buffer.alloc(headerBytes(length, false));
  writeHeader(out, opcode, length, false);
  return out;
}

/** A fresh masking key, never all zeros (a zero key would let the server skip unmasking). */
export function maskKey(): Uint8Array {
  const key = randomBytes(4);
  if ((key[0] | key[1] | key[2] | key[3]) === 0) key[0] = 1;
  return key;
}

/** A whole client frame with FIN set: header, masking key, payload XOR key. */
export function clientFrame(opcode: number, payload: Uint8Array, key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(headerBytes(payload.length, true) + payload.length);
  const at = writeHeader(out, opcode, payload.length, true);
  out.set(key, at);
  const p = at + 4;
  for (let i = 0; i < payload.length; i += 1) out[p + i] = payload[i] ^ key[i & 3];
  return out;
}

/** The HTTP upgrade request of a client that sends no Origin (not a browser). */
export function upgradeRequest(path: string, authority: string): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
}

/** Longest response head accepted. */
const MAX_HEAD_BYTES = 8192;

/**
 * Reads the server's answer to the upgrade request at `off`: the bytes it takes (0: not complete yet) and,
 * if it is not a 101 with the right Sec-WebSocket-Accept and no extension, why.
 */
export function readUpgradeResponse(buf: Buffer, off: number, end: number): { used: number; error: string | null } {
  const head = buf.indexOf('\r\n\r\n', off, 'latin1');
  if (head < 0 || head + 4 > end) {
    if (end - off < MAX_HEAD_BYTES) return { used: 0, error: null };
    return { used: end - off, error: 'upgrade response head too long' };
  }
  const text = buf.toString('latin1', off, head);
  const lines = text.split('\r\n');
  const used = head + 4 - off;
  if (!/^HTTP\/1\.1 101 /.test(lines[0])) return { used, error: `upgrade refused: ${lines[0]}` };
  let accept = '';
  let extensions = '';
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'sec-websocket-accept') accept = value;
    else if (name === 'sec-websocket-extensions') extensions = value;
  }
  if (accept !== EXPECTED_ACCEPT) return { used, error: `bad Sec-WebSocket-Accept: ${JSON.stringify(accept)}` };
  if (extensions !== '') return { used, error: `extension not asked for: ${extensions}` };
  return { used, error: null };
}

/** One server frame as read by {@link readFrame}; reused, never allocated per frame. */
export interface FrameInfo {
  fin: boolean;
  /** RSV bits (must be 0: no extension was negotiated). */
  rsv: number;
  opcode: number;
  masked: boolean;
  payloadAt: number;
  payloadLength: number;
  /** Header and payload. */
  frameBytes: number;
}

/**
 * Reads the frame at `off` into `out`; false when it is not complete in buf[off, end). A frame whose
 * length exceeds `maxPayload` is reported complete (with its real length) so the caller can give up on it.
 */
export function readFrame(buf: Buffer, off: number, end: number, out: FrameInfo, maxPayload: number): boolean {
  if (end - off < 2) return false;
  const b0 = buf[off];
  const b1 = buf[off + 1];
  let length = b1 & 0x7f;
  let header = 2;
  if (length === 126) {
    if (end - off < 4) return false;
    length = buf.readUInt16BE(off + 2);
    header = 4;
  } else if (length === 127) {
    if (end - off < 10) return false;
    length = buf.readUInt32BE(off + 2) * 2 ** 32 + buf.readUInt32BE(off + 6);
    header = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  if (masked) header += 4;
  out.fin = (b0 & 0x80) !== 0;
  out.rsv = b0 & 0x70;
  out.opcode = b0 & 0x0f;
  out.masked = masked;
  out.payloadAt = off + header;
  out.payloadLength = length;
  out.frameBytes = header + length;
  return length > maxPayload || end - off >= header + length;
}
