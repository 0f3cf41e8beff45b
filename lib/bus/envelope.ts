import { withCode } from '../errors';

/** Who sent a message, as it travels: the origin client on its node (id -1 for server code). */
export interface EnvelopeOrigin {
  readonly id: number;
  readonly address: string;
  readonly port: number;
}

/** What an envelope carries: a message, or a change of presence in the same ordered stream. */
export const enum EnvelopeKind {
  /** A message to deliver: `message` is its bytes after the origin's filters. */
  Message = 0,
  /** A client joined its node: `message` is the JSON of the state fields its node publishes. */
  Join = 1,
  /** A client left its node. */
  Leave = 2,
  /** A client's published state changed: `message` is the JSON of the fields. */
  Update = 3,
  /** The node's members follow (Join envelopes): forget what was known of them before. */
  Snapshot = 4,
  /** Asks the node named in `message` (UTF-8) for a snapshot. */
  SnapshotRequest = 5,
}

/** One message, or one presence change, as it crosses the bus. */
export interface Envelope {
  readonly kind: EnvelopeKind;
  readonly origin: EnvelopeOrigin;
  /** The rooms a message goes to (null: everyone). */
  readonly rooms: readonly string[] | null;
  readonly message: Buffer;
}

/** What one frame carries: one node's envelopes of one turn, numbered from `first`. */
export interface Frame {
  readonly kind: FrameKind;
  /** The node that published it. */
  readonly node: string;
  /** Its process incarnation: a node restarted with the same id starts a new one, numbered from 0. */
  readonly incarnation: string;
  /** Sequence number of its first envelope; the others follow one by one. */
  readonly first: number;
  readonly envelopes: readonly Envelope[];
}

/** What a frame is for. */
export const enum FrameKind {
  /** Messages to deliver. */
  Messages = 1,
  /** A heartbeat: no envelopes; `first` is the next sequence number the node will use. */
  Heartbeat = 2,
}

const MAGIC = 0x4d; // 'M'
const VERSION = 2;
const NO_ROOMS = 0xffff;
const SERVER = 0xffffffff;

/** Bytes of a frame's header for this node and incarnation. */
export function headerBytes(node: string, incarnation: string): number {
  return 3 + 1 + Buffer.byteLength(node) + 1 + Buffer.byteLength(incarnation) + 8 + 4;
}

/** Bytes one envelope takes in a frame. */
export function envelopeBytes(envelope: Envelope): number {
  let bytes = 1 + 4 + 1 + Buffer.byteLength(envelope.origin.address) + 2 + 2 + 4 + envelope.message.length;
  if (envelope.rooms !== null) for (const room of envelope.rooms) bytes += 2 + Buffer.byteLength(room);
  return bytes;
}

/** Encodes a frame. Pure. */
export function encodeFrame(frame: Frame): Buffer {
  let size = headerBytes(frame.node, frame.incarnation);
  for (const envelope of frame.envelopes) size += envelopeBytes(envelope);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  out[at++] = MAGIC;
  out[at++] = VERSION;
  out[at++] = frame.kind;
  at = writeShort(out, at, frame.node);
  at = writeShort(out, at, frame.incarnation);
  out.writeUInt32BE(Math.floor(frame.first / 2 ** 32), at);
  out.writeUInt32BE(frame.first >>> 0, at + 4);
  out.writeUInt32BE(frame.envelopes.length, at + 8);
  at += 12;
  for (const { kind, origin, rooms, message } of frame.envelopes) {
    out[at++] = kind;
    out.writeUInt32BE(origin.id < 0 ? SERVER : origin.id, at);
    at = writeShort(out, at + 4, origin.address);
    out.writeUInt16BE(origin.port, at);
    out.writeUInt16BE(rooms === null ? NO_ROOMS : rooms.length, at + 2);
    at += 4;
    if (rooms !== null) {
      for (const room of rooms) {
        const length = out.write(room, at + 2);
        out.writeUInt16BE(length, at);
        at += 2 + length;
      }
    }
    out.writeUInt32BE(message.length, at);
    message.copy(out, at + 4);
    at += 4 + message.length;
  }
  return out;
}

/**
 * Decodes a frame. Messages are views into `bytes` (the frame is the receiver's to keep).
 * @throws a coded Error when the bytes are not a frame of this version
 */
export function decodeFrame(bytes: Buffer): Frame {
  const fail = (why: string): never => {
    throw withCode(new Error(`not a multiplexer bus frame: ${why}`), 'ERR_PROTOCOL');
  };
  if (bytes.length < 5 || bytes[0] !== MAGIC) fail('bad magic');
  if (bytes[1] !== VERSION) fail(`version ${bytes[1]}`);
  const kind = bytes[2] as FrameKind;
  let at = 3;
  const need = (n: number): void => {
    if (at + n > bytes.length) fail('truncated');
  };
  const short = (): string => {
    need(1);
    const length = bytes[at];
    need(1 + length);
    const text = bytes.toString('utf8', at + 1, at + 1 + length);
    at += 1 + length;
    return text;
  };
  const node = short();
  const incarnation = short();
  need(12);
  const first = bytes.readUInt32BE(at) * 2 ** 32 + bytes.readUInt32BE(at + 4);
  const count = bytes.readUInt32BE(at + 8);
  at += 12;
  const envelopes: Envelope[] = [];
  for (let i = 0; i < count; i += 1) {
    need(5);
    const envelopeKind = bytes[at] as EnvelopeKind;
    if (envelopeKind > EnvelopeKind.SnapshotRequest) fail(`envelope kind ${envelopeKind}`);
    const rawId = bytes.readUInt32BE(at + 1);
    at += 5;
    const address = short();
    need(4);
    const port = bytes.readUInt16BE(at);
    const roomCount = bytes.readUInt16BE(at + 2);
    at += 4;
    let rooms: string[] | null = null;
    if (roomCount !== NO_ROOMS) {
      rooms = [];
      for (let r = 0; r < roomCount; r += 1) {
        need(2);
        const length = bytes.readUInt16BE(at);
        need(2 + length);
        rooms.push(bytes.toString('utf8', at + 2, at + 2 + length));
        at += 2 + length;
      }
    }
    need(4);
    const length = bytes.readUInt32BE(at);
    need(4 + length);
    const message = bytes.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    envelopes.push({
      kind: envelopeKind,
      origin: { id: rawId === SERVER ? -1 : rawId, address, port },
      rooms,
      message,
    });
  }
  return { kind, node, incarnation, first, envelopes };
}

function writeShort(out: Buffer, at: number, text: string): number {
  const length = out.write(text, at + 1);
  out[at] = length;
  return at + 1 + length;
}

/** How many incarnations of a node a receiver remembers having moved past. */
const RETIRED_INCARNATIONS = 8;

/** What a receiver makes of a frame from another node, given what it has seen of that node. */
export interface SequenceVerdict {
  /** Envelopes of the frame to deliver: those from `skip` on. */
  readonly skip: number;
  /** Messages lost before this frame (a gap in the node's numbering). */
  readonly lost: number;
  /** True when the frame starts a new incarnation of the node (it restarted). */
  readonly restarted: boolean;
}

/**
 * The numbering seen from one other node: repeats are dropped, gaps counted as losses, a late frame (older
 * than one already delivered) dropped rather than delivered out of order. Pure.
 */
export class NodeSequence {
  private incarnation: string | null = null;
  /** Incarnations moved past, newest last (a few: a frame of one is late, however late). */
  private readonly retired: string[] = [];
  /** The next sequence number expected from it. */
  next = 0;

  /** Judges a frame of `count` messages numbered from `first` in `incarnation`, and moves on past it. */
  accept(incarnation: string, first: number, count: number): SequenceVerdict {
    let restarted = false;
    if (incarnation !== this.incarnation) {
      // A frame of the incarnation before a restart, overtaken by the new one's: late, never delivered.
      if (this.retired.includes(incarnation)) return { skip: count, lost: 0, restarted: false };
      restarted = this.incarnation !== null;
      if (this.incarnation !== null) {
        this.retired.push(this.incarnation);
        if (this.retired.length > RETIRED_INCARNATIONS) this.retired.shift();
      }
      this.incarnation = incarnation;
      // A node first heard of mid-stream: what it sent before is not ours to count as lost. A restarted one
      // numbers from 0 again while we listen: a gap before its first frame heard is a loss.
      this.next = restarted ? 0 : first;
    }
    const end = first + count;
    if (end <= this.next) return { skip: count, lost: 0, restarted };
    const skip = Math.max(0, this.next - first);
    const lost = Math.max(0, first - this.next);
    this.next = end;
    return { skip, lost, restarted };
  }
}
