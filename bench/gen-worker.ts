/**
 * One worker thread of the load generator: a share of the connections, their sending and the check of
 * every delivery (order, loss, duplicates per sender, latency).
 *
 * Hot path: sockets read with `onread` into one buffer per worker (no allocation per read); deliveries are
 * checked by position (all frames of a case have one size) and fall back to the protocol parser for
 * anything else. Flow control is in shared memory: each worker publishes, per sender, the fewest messages
 * any of its receivers has; a sender goes on while it is less than `window` ahead of the minimum over all
 * workers, and a worker whose progress may unblock another worker's sender wakes it with Atomics.notify.
 *
 * WebSocket clients (`--ws-proto`) use the generator's own codec over the same sockets (masked client
 * frames, server frames checked by position), or with `--ws-client library` the `ws` / socket.io-client
 * packages, whose messages are checked the same way. In a mixed room each connection has its own wire.
 *
 * Rooms (`rooms` > 0): each client names its room in its first line; a receiver expects, waits for and
 * counts only the senders of its own room, and a delivery from another room is malformed.
 */
import * as net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import {
  type CoordinatorMessage,
  type WorkerInit,
  type WorkerMessage,
  type WorkerStats,
  NO_MINIMUM,
  nodeOf,
  ownerOf,
  roomLine,
  roomOf,
  viewsOf,
} from './gen-shared';
import { Histogram } from './histogram';
import {
  KIND_DATA,
  KIND_WARM,
  NEWLINE,
  SEP_OFFSET,
  SEPARATOR,
  readSeq,
  readSid,
  readTime,
  stamp,
  template,
  timeDigits,
  wellFormed,
} from './message';
import { type LibraryLink, connectLibrary } from './gen-library';
import { type FrameSink, type Protocol, type Role, afterNick, protocolNamed } from './protocols';
import { maskKey } from './ws-wire';

const init = workerData as WorkerInit;
const port = parentPort;
if (port === null) throw new Error('gen-worker runs as a worker thread');

const cfg = init.config;
const me = init.index;
const W = cfg.workers;
const S = cfg.senders;
const size = cfg.size;
/** Rooms (0: none, everyone hears everyone). */
const R = cfg.rooms;
const strip = cfg.stripPrefix;
const shared = viewsOf(init.shared);
const epoch = BigInt(init.epochNs);
const readBuffer = Buffer.allocUnsafe(128 * 1024);

/** How one kind of connection talks: its protocol and port, and the shapes of what it sends and gets. */
interface Wire {
  readonly protocol: Protocol;
  readonly port: number;
  /** Made with the `ws` / socket.io-client packages rather than on a socket of our own. */
  readonly library: boolean;
  /** The bytes before every delivery (own codec), its length, first and last byte. */
  readonly dPrefix: Buffer;
  readonly dpl: number;
  readonly dFirst: number;
  readonly dLast: number;
  /** Bytes of a delivered message: `size`, or one less when its newline does not travel. */
  readonly msgLen: number;
  readonly newline: boolean;
  /** Bytes after every delivery, and the last of them. */
  readonly suffixLen: number;
  readonly suffixLast: number;
  /** A whole delivery: prefix, message, suffix. */
  readonly frameLen: number;
  /** Bytes of one published message (framing included) and where the message starts in them. */
  readonly pubLen: number;
  readonly pubOffset: number;
  /** One write carries at most this many messages. */
  readonly perWrite: number;
  readonly carryBytes: number;
}

function wireOf(protocol: Protocol, wirePort: number, library: boolean): Wire {
  const dPrefix = library ? Buffer.alloc(0) : protocol.deliveryPrefix(size);
  const dpl = dPrefix.length;
  const msgLen = protocol.carriesNewline ? size : size - 1;
  const suffix = library ? Buffer.alloc(0) : protocol.deliverySuffix;
  const frameLen = dpl + msgLen + suffix.length;
  const pubLen = library ? size : protocol.publishFrame(template(size, 0), null).length;
  return {
    protocol,
    port: wirePort,
    library,
    dPrefix,
    dpl,
    dFirst: dpl > 0 ? dPrefix[0] : 0,
    dLast: dpl > 0 ? dPrefix[dpl - 1] : 0,
    msgLen,
    newline: protocol.carriesNewline,
    suffixLen: suffix.length,
    suffixLast: suffix.length > 0 ? suffix[suffix.length - 1] : 0,
    frameLen,
    pubLen,
    pubOffset: library ? 0 : protocol.publishOffset(size),
    perWrite: Math.max(
      1,
      Math.min(
        cfg.window > 0 ? cfg.window : Infinity,
        cfg.batch > 0 ? cfg.batch : Infinity,
        Math.floor((256 * 1024) / pubLen),
      ),
    ),
    carryBytes: Math.max(4096, 2 * (frameLen + 128)),
  };
}

const tcpWire = wireOf(protocolNamed(cfg.proto), cfg.port, false);
const wsWire = cfg.wsProto === null ? null : wireOf(protocolNamed(cfg.wsProto), cfg.wsPort, cfg.wsClient === 'library');

function nowNs(): number {
  return Number(process.hrtime.bigint() - epoch);
}

// ------------------------------------------------------------------ state

const PHASE_SETUP = 0;
const PHASE_RUN = 1;
const PHASE_STOPPED = 2;
const PHASE_DONE = 3;
let phase = PHASE_SETUP;
let runStart = 0;

const histogram = new Histogram();
/** Nodes of a cluster (1: one server); with more, cross-node and same-node deliveries are timed apart too. */
const NODES = cfg.ports.length;
const crossHistogram = new Histogram();
const sameHistogram = new Histogram();
let deliveries = 0;
let reportedDeliveries = 0;
let gaps = 0;
let backsteps = 0;
let malformedCount = 0;
let selfDeliveries = 0;
let serverClosed = 0;
const errors: string[] = [];
function noteError(message: string): void {
  if (errors.length < 5) errors.push(message);
}

/** Per local receiver and sender: the next sequence number expected (= messages received in order). */
let next = new Int32Array(0);
/** Per sender: the fewest messages any local receiver has, and how many receivers are at that minimum. */
const minVal = new Int32Array(S);
const atMin = new Int32Array(S);
/** Per local receiver: its own sender id (all-mode), whose messages it does not wait for. */
let ownOf = new Int32Array(0);
/** Per local receiver: its room (0 without rooms), whose senders alone it waits for. */
let roomOfReceiver = new Int32Array(0);
/** Per sender, locally owned: messages sent. */
const sentLocal = new Int32Array(S);

let pumpWanted = false;
const notifyWanted = new Uint8Array(W);
let notifyAny = false;
let turnScheduled = false;
let currentNow = 0;

// ------------------------------------------------------------------ connections

class Conn implements FrameSink {
  socket: net.Socket | null = null;
  /** A client made with the `ws` / socket.io-client packages (instead of `socket`). */
  link: LibraryLink | null = null;
  /** This sender's WebSocket masking key (own codec). */
  key: Uint8Array | null = null;
  /** Handshake complete: counts as connected. */
  handshaken = false;
  warm = false;
  inflight = false;
  closed = false;
  /** What the server said when it closed (a WebSocket close frame), for the error message. */
  closeReason = '';
  carry: Buffer | null = null;
  carryLen = 0;
  /** Template of a batch of this sender's messages (publish framing included). */
  batchTemplate: Buffer | null = null;
  readonly afterWrite = (error?: Error | null): void => {
    this.inflight = false;
    if (error) this.fail(`write: ${error.message}`);
    else wantPump();
  };

  constructor(
    /** Local receiver index, or -1 for a sending-only connection. */
    readonly ridx: number,
    /** Sender id when it sends, else -1. */
    readonly sid: number,
    /** Sender id whose messages are its own (all-mode), else -1. */
    readonly ownSid: number,
    readonly wire: Wire,
  ) {}

  /** The node this connection is on (a cluster: all-mode), by its client index. */
  get node(): number {
    return nodeOf(Math.max(0, this.ownSid >= 0 ? this.ownSid : this.sid), cfg.receivers, NODES);
  }

  /** The port it connects to: its wire's, or on a cluster its node's. */
  get port(): number {
    if (NODES === 1) return this.wire.port;
    return (this.wire === tcpWire ? cfg.ports : cfg.wsPorts)[this.node];
  }

  get role(): Role {
    return { receives: this.ridx >= 0, sends: this.sid >= 0 };
  }

  payload(buf: Buffer, at: number, length: number): void {
    const w = this.wire;
    if (length !== w.msgLen || !wellFormed(buf, at, size, w.newline)) {
      malformedCount += 1;
      noteError(
        `malformed payload of ${length} bytes: ${JSON.stringify(buf.toString('latin1', at, at + Math.min(length, 40)))}`,
      );
      return;
    }
    if (buf[at] === KIND_WARM) {
      if (R > 0 && this.ridx >= 0 && readSid(buf, at) % R !== roomOfReceiver[this.ridx])
        this.malformed(`receiver ${this.ridx}@${me}: a warm-up message from another room`);
      else this.markWarm();
    } else if (this.ridx >= 0) deliver(this, buf, at, currentNow);
  }

  ready(): void {
    if (this.handshaken) return;
    this.handshaken = true;
    connectedOne();
  }

  reply(): void {
    // A publish acknowledged: nothing to check.
  }

  answer(bytes: Buffer): void {
    this.socket?.write(bytes);
  }

  closing(why: string): void {
    this.closeReason = why;
  }

  malformed(what: string): void {
    malformedCount += 1;
    noteError(what);
  }

  markWarm(): void {
    if (this.warm || this.ridx < 0) return;
    this.warm = true;
    Atomics.add(shared.warm, me, 1);
  }

  /** Writes `count` published messages of `out` (laid out `pubLen` apart); `done` once written. */
  send(out: Buffer, count: number, done: ((error?: Error | null) => void) | null): void {
    const link = this.link;
    if (link === null) {
      (this.socket as net.Socket).write(out, done ?? undefined);
      return;
    }
    const w = this.wire;
    for (let k = 0; k < count; k += 1)
      link.send(out, k * w.pubLen, k * w.pubLen + w.msgLen, k === count - 1 ? done : null);
  }

  /** Bytes written but not yet sent. */
  get backlog(): number {
    return this.link !== null ? this.link.buffered : (this.socket as net.Socket).writableLength;
  }

  fail(message: string): void {
    if (this.closed) return;
    this.closed = true;
    if (phase === PHASE_DONE) return;
    serverClosed += 1;
    const why = this.closeReason === '' ? message : `${message} (${this.closeReason})`;
    noteError(why);
    if (!this.handshaken) fatal(`connection failed during setup: ${why}`);
  }
}

const receivers: Conn[] = [];
const senders: Conn[] = [];
const conns: Conn[] = [];

/** The wire of client `i` (all-mode) or receiver `i`: the first `wsClients` speak WebSocket. */
function clientWire(i: number): Wire {
  return wsWire !== null && i < cfg.wsClients ? wsWire : tcpWire;
}

function plan(): void {
  if (cfg.mode === 'all') {
    for (let i = 0; i < cfg.receivers; i += 1) {
      if (ownerOf(i, W) !== me) continue;
      const wire = clientWire(i);
      if (wire.protocol.separatePublisher) {
        const rc = new Conn(receivers.length, -1, i, wire);
        receivers.push(rc);
        conns.push(rc);
        const sc = new Conn(-1, i, -1, wire);
        senders.push(sc);
        conns.push(sc);
      } else {
        const c = new Conn(receivers.length, i, i, wire);
        receivers.push(c);
        senders.push(c);
        conns.push(c);
      }
    }
  } else {
    for (let i = 0; i < cfg.receivers; i += 1) {
      if (ownerOf(i, W) !== me) continue;
      const c = new Conn(receivers.length, -1, -1, clientWire(i));
      receivers.push(c);
      conns.push(c);
    }
    for (let s = 0; s < S; s += 1) {
      if (ownerOf(s, W) !== me) continue;
      const c = new Conn(-1, s, -1, wsWire !== null && s < cfg.wsSenders ? wsWire : tcpWire);
      senders.push(c);
      conns.push(c);
    }
  }
  next = new Int32Array(receivers.length * S);
  ownOf = new Int32Array(receivers.length);
  roomOfReceiver = new Int32Array(receivers.length);
  for (const r of receivers) {
    ownOf[r.ridx] = r.ownSid;
    roomOfReceiver[r.ridx] = roomOf(r.ownSid, R);
  }
  for (let s = 0; s < S; s += 1) recomputeMin(s, false);
  for (const c of senders) c.batchTemplate = batchTemplate(c, template(size, c.sid));
}

/** What publishes `message` (own codec: framed, and masked with the sender's key). */
function publication(c: Conn, message: Buffer): Buffer {
  const w = c.wire;
  if (w.library) return message;
  if (w.protocol.masked && c.key === null) c.key = maskKey();
  return w.protocol.publishFrame(message, c.key);
}

/** `perWrite` copies of the publication of `message`. */
function batchTemplate(c: Conn, message: Buffer): Buffer {
  const w = c.wire;
  const frame = publication(c, message);
  const batch = Buffer.allocUnsafe(w.perWrite * w.pubLen);
  for (let i = 0; i < w.perWrite; i += 1) frame.copy(batch, i * w.pubLen);
  return batch;
}

let connecting = 0;
let nextToConnect = 0;
let readyCount = 0;

function connectMore(): void {
  while (connecting < cfg.connectConcurrency && nextToConnect < conns.length) {
    const c = conns[nextToConnect];
    nextToConnect += 1;
    connecting += 1;
    if (c.wire.library) openLibrary(c);
    else open(c);
  }
}

function open(c: Conn): void {
  const w = c.wire;
  const socket = net.connect({
    host: cfg.host,
    port: c.port,
    noDelay: true,
    onread: { buffer: readBuffer, callback: (n: number) => onRead(c, n) },
  });
  c.socket = socket;
  socket.once('connect', () => {
    connecting -= 1;
    const role = c.role;
    let hello = w.protocol.handshake(role, cfg.mode !== 'all', `${cfg.host}:${c.port}`);
    if (R > 0) hello = Buffer.concat([Buffer.from(roomLine(roomOf(c.ownSid, R))), hello]);
    if (hello.length > 0) socket.write(hello);
    if (!w.protocol.awaitsReady(role)) c.ready();
    connectMore();
  });
  socket.on('error', (error: Error) => c.fail(`socket error: ${error.message}`));
  socket.on('close', () => c.fail('closed by the server'));
}

function openLibrary(c: Conn): void {
  const expectBinary = c.wire.protocol.name === 'ws-binary';
  let opened = false;
  c.link = connectLibrary(c.wire.protocol.name, cfg.host, c.port, {
    open() {
      opened = true;
      connecting -= 1;
      c.ready();
      connectMore();
    },
    message(data, binary) {
      const now = nowNs();
      currentNow = now;
      if (binary !== expectBinary)
        c.malformed(`a ${binary ? 'binary' : 'text'} message where the other kind is expected`);
      else c.payload(data, 0, data.length);
      endOfRead(now);
    },
    close(why) {
      if (!opened) connecting -= 1;
      opened = true;
      c.fail(`closed by the server: ${why}`);
    },
  });
}

function connectedOne(): void {
  readyCount += 1;
  if (readyCount === conns.length) post({ type: 'connected' });
}

// ------------------------------------------------------------------ receiving

function onRead(c: Conn, n: number): boolean {
  const now = nowNs();
  currentNow = now;
  let start = 0;
  if (c.carryLen > 0) {
    const carry = c.carry as Buffer;
    const take = Math.min(n, carry.length - c.carryLen);
    readBuffer.copy(carry, c.carryLen, 0, take);
    const total = c.carryLen + take;
    const used = scan(c, carry, 0, total, now);
    if (used >= c.carryLen) {
      start = used - c.carryLen;
      c.carryLen = 0;
    } else if (take === n) {
      carry.copy(carry, 0, used, total);
      c.carryLen = total - used;
      endOfRead(now);
      return true;
    } else {
      c.malformed(`a frame longer than ${carry.length} bytes`);
      c.carryLen = 0;
    }
  }
  const used = scan(c, readBuffer, start, n, now);
  const left = n - used;
  if (left > 0) {
    if (c.carry === null) c.carry = Buffer.allocUnsafe(c.wire.carryBytes);
    if (left > c.carry.length) c.malformed(`a frame longer than ${c.carry.length} bytes`);
    else {
      readBuffer.copy(c.carry, 0, used, n);
      c.carryLen = left;
    }
  }
  endOfRead(now);
  return true;
}

/** Whether the message at `p` has the shape of a data message (kind, separator, newline if it travels). */
function isData(buf: Buffer, p: number, newline: boolean): boolean {
  return buf[p] === KIND_DATA && buf[p + SEP_OFFSET] === SEPARATOR && (!newline || buf[p + size - 1] === NEWLINE);
}

/** Checks every whole frame in buf[off, end); returns where the first incomplete one starts. */
function scan(c: Conn, buf: Buffer, off: number, end: number, now: number): number {
  const receives = c.ridx >= 0;
  const w = c.wire;
  const { dpl, dFirst, dLast, frameLen, newline, suffixLen, suffixLast, protocol } = w;
  const decode = protocol.decode;
  while (off < end) {
    if (strip) {
      const p = afterNick(buf, off, end);
      if (p >= 0 && p + size <= end && isData(buf, p, true)) {
        if (receives) deliver(c, buf, p, now);
        off = p + size;
        continue;
      }
    } else if (end - off >= frameLen && (dpl === 0 || (buf[off] === dFirst && buf[off + dpl - 1] === dLast))) {
      const p = off + dpl;
      if (isData(buf, p, newline) && (suffixLen === 0 || buf[off + frameLen - 1] === suffixLast)) {
        if (decode !== null) decode(buf, p);
        if (receives) deliver(c, buf, p, now);
        off += frameLen;
        continue;
      }
    }
    const used = protocol.parse(buf, off, end, c, strip);
    if (used === 0) break;
    off += used;
  }
  return off;
}

function deliver(c: Conn, buf: Buffer, at: number, now: number): void {
  const sid = readSid(buf, at);
  if (sid === c.ownSid) {
    selfDeliveries += 1;
    return;
  }
  if (sid >= S) {
    c.malformed(`sender id ${sid} out of range`);
    return;
  }
  if (R > 0 && sid % R !== roomOfReceiver[c.ridx]) {
    c.malformed(`receiver ${c.ridx}@${me} in room ${roomOfReceiver[c.ridx]} got sender ${sid} of room ${sid % R}`);
    return;
  }
  const seq = readSeq(buf, at);
  const idx = c.ridx * S + sid;
  const expected = next[idx];
  if (seq === expected) {
    next[idx] = expected + 1;
    deliveries += 1;
    if (expected === minVal[sid]) {
      atMin[sid] -= 1;
      if (atMin[sid] === 0) recomputeMin(sid, true);
    }
  } else if (seq > expected) {
    gaps += 1;
    noteError(`receiver ${c.ridx}@${me}: sender ${sid} seq ${seq}, expected ${expected}`);
    next[idx] = seq + 1;
    deliveries += 1;
    recomputeMin(sid, true);
  } else {
    backsteps += 1;
    noteError(`receiver ${c.ridx}@${me}: sender ${sid} seq ${seq} again or late, expected ${expected}`);
    return;
  }
  const latency = now - readTime(buf, at);
  histogram.record(latency);
  if (NODES > 1) {
    if (nodeOf(sid, cfg.receivers, NODES) === nodeOf(c.ownSid, cfg.receivers, NODES)) sameHistogram.record(latency);
    else crossHistogram.record(latency);
  }
}

function recomputeMin(sid: number, notify: boolean): void {
  let m = NO_MINIMUM;
  let k = 0;
  const room = roomOf(sid, R);
  for (let r = 0; r < ownOf.length; r += 1) {
    if (ownOf[r] === sid || roomOfReceiver[r] !== room) continue;
    const v = next[r * S + sid];
    if (v < m) {
      m = v;
      k = 1;
    } else if (v === m) k += 1;
  }
  minVal[sid] = m;
  atMin[sid] = k;
  Atomics.store(shared.localMin, me * S + sid, m);
  if (!notify) return;
  const owner = ownerOf(sid, W);
  if (owner === me) pumpWanted = true;
  else {
    notifyWanted[owner] = 1;
    notifyAny = true;
  }
}

function endOfRead(now: number): void {
  if (deliveries !== reportedDeliveries) {
    Atomics.add(shared.delivered, me, deliveries - reportedDeliveries);
    reportedDeliveries = deliveries;
    shared.lastRx[me] = now;
  }
  if (pumpWanted || notifyAny) scheduleTurn();
}

/** Runs endOfTurn once after this turn's I/O, however often it is asked for. */
function scheduleTurn(): void {
  if (turnScheduled) return;
  turnScheduled = true;
  setImmediate(endOfTurn);
}

function endOfTurn(): void {
  turnScheduled = false;
  if (notifyAny) {
    notifyAny = false;
    for (let w = 0; w < W; w += 1) {
      if (notifyWanted[w] === 0) continue;
      notifyWanted[w] = 0;
      Atomics.add(shared.wake, w, 1);
      Atomics.notify(shared.wake, w);
    }
  }
  if (pumpWanted) pump();
}

// ------------------------------------------------------------------ sending

function wantPump(): void {
  pumpWanted = true;
  scheduleTurn();
}

const timeBuf = new Uint8Array(8);

function pump(): void {
  pumpWanted = false;
  if (phase !== PHASE_RUN) return;
  const now = nowNs();
  let stamped = false;
  for (let i = 0; i < senders.length; i += 1) {
    const c = senders[i];
    if (c.inflight || c.closed) continue;
    const s = c.sid;
    const w = c.wire;
    const done = sentLocal[s];
    let allowed = w.perWrite;
    if (cfg.window > 0) {
      let m = NO_MINIMUM;
      for (let w = 0; w < W; w += 1) {
        const v = Atomics.load(shared.localMin, w * S + s);
        if (v < m) m = v;
      }
      if (m !== NO_MINIMUM) allowed = Math.min(allowed, m + cfg.window - done);
    }
    // Paced senders start a fraction of a period apart (sender s at s/S of it), not all at once in bursts.
    if (cfg.rate > 0) allowed = Math.min(allowed, Math.floor(((now - runStart) * cfg.rate) / 1e9 + 1 - s / S) - done);
    if (allowed <= 0) continue;
    if (!stamped) {
      timeDigits(now, timeBuf);
      stamped = true;
    }
    const out = Buffer.allocUnsafe(allowed * w.pubLen);
    (c.batchTemplate as Buffer).copy(out, 0, 0, allowed * w.pubLen);
    const seal = w.library ? null : w.protocol.sealStamp;
    for (let k = 0; k < allowed; k += 1) {
      const at = k * w.pubLen + w.pubOffset;
      stamp(out, at, done + k, timeBuf);
      if (seal !== null) seal(out, at, c.key as Uint8Array);
    }
    sentLocal[s] = done + allowed;
    Atomics.store(shared.sent, s, done + allowed);
    c.inflight = true;
    c.send(out, allowed, c.afterWrite);
  }
}

type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
) => { async: boolean; value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Waits for other workers' progress that may unblock our senders. */
function armWake(): void {
  if (phase === PHASE_DONE) return;
  const result = waitAsync(shared.wake, me, Atomics.load(shared.wake, me));
  const woke = (): void => {
    wantPump();
    armWake();
  };
  if (result.async) (result.value as Promise<string>).then(woke, woke);
  else setImmediate(woke);
}

let warmTimer: NodeJS.Timeout | null = null;
let paceTimer: NodeJS.Timeout | null = null;

/**
 * Sender 0 (with rooms: the first client of each room, senders 0..R-1) sends warm-up messages until every
 * receiver has had one.
 */
function warmup(on: boolean): void {
  if (warmTimer !== null) clearInterval(warmTimer);
  warmTimer = null;
  const warmers = senders.filter((sender) => sender.sid < Math.max(1, R));
  if (!on || warmers.length === 0) return;
  const frames = warmers.map((c) => publication(c, template(size, c.sid, KIND_WARM)));
  const send = (): void => {
    for (let i = 0; i < warmers.length; i += 1) {
      const c = warmers[i];
      if (!c.closed && c.backlog === 0) c.send(frames[i], 1, null);
    }
  };
  send();
  warmTimer = setInterval(send, 300);
}

// ------------------------------------------------------------------ control

function post(message: WorkerMessage): void {
  (port as NonNullable<typeof port>).postMessage(message);
}

function fatal(message: string): void {
  post({ type: 'fatal', message });
}

function result(): WorkerStats {
  let lost = 0;
  for (let r = 0; r < receivers.length; r += 1) {
    for (let s = 0; s < S; s += 1) {
      if (ownOf[r] === s || roomOfReceiver[r] !== roomOf(s, R)) continue;
      const missing = Atomics.load(shared.sent, s) - next[r * S + s];
      if (missing > 0) lost += missing;
    }
  }
  return {
    deliveries,
    gaps,
    backsteps,
    malformed: malformedCount,
    selfDeliveries,
    lost,
    serverClosed,
    errors,
    histogram: histogram.counts,
    maxUs: histogram.maxUs,
    crossHistogram: crossHistogram.counts,
    sameHistogram: sameHistogram.counts,
  };
}

port.on('message', (message: CoordinatorMessage) => {
  switch (message.type) {
    case 'warmup':
      warmup(message.on);
      break;
    case 'run':
      runStart = message.startNs;
      phase = PHASE_RUN;
      if (senders.length > 0) armWake();
      if (cfg.rate > 0) paceTimer = setInterval(wantPump, 1);
      wantPump();
      break;
    case 'stop':
      phase = PHASE_STOPPED;
      if (paceTimer !== null) clearInterval(paceTimer);
      post({ type: 'stopped' });
      break;
    case 'finish': {
      phase = PHASE_DONE;
      warmup(false);
      if (paceTimer !== null) clearInterval(paceTimer);
      const stats = result();
      for (const c of conns) {
        c.socket?.destroy();
        c.link?.close();
      }
      post({ type: 'result', stats });
      break;
    }
  }
});

plan();
if (conns.length === 0) post({ type: 'connected' });
else connectMore();
