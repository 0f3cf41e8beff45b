/**
 * One worker thread of the load generator: a share of the connections, their sending and the check of
 * every delivery (order, loss, duplicates per sender, latency).
 *
 * Hot path: sockets read with `onread` into one buffer per worker (no allocation per read); deliveries are
 * checked by position (all frames of a case have one size) and fall back to the protocol parser for
 * anything else. Flow control is in shared memory: each worker publishes, per sender, the fewest messages
 * any of its receivers has; a sender goes on while it is less than `window` ahead of the minimum over all
 * workers, and a worker whose progress may unblock another worker's sender wakes it with Atomics.notify.
 */
import * as net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import {
  type CoordinatorMessage,
  type WorkerInit,
  type WorkerMessage,
  type WorkerStats,
  NO_MINIMUM,
  ownerOf,
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
import { type FrameSink, type Role, afterNick, protocolNamed } from './protocols';

const init = workerData as WorkerInit;
const port = parentPort;
if (port === null) throw new Error('gen-worker runs as a worker thread');

const cfg = init.config;
const me = init.index;
const W = cfg.workers;
const S = cfg.senders;
const size = cfg.size;
const strip = cfg.stripPrefix;
const protocol = protocolNamed(cfg.proto);
const shared = viewsOf(init.shared);
const epoch = BigInt(init.epochNs);

const dPrefix = protocol.deliveryPrefix(size);
const dpl = dPrefix.length;
const dFirst = dpl > 0 ? dPrefix[0] : 0;
const dLast = dpl > 0 ? dPrefix[dpl - 1] : 0;
const frameLen = dpl + size + protocol.deliverySuffixBytes;
const suffixed = protocol.deliverySuffixBytes > 0;
const pPrefix = protocol.publishPrefix(size);
const pubLen = pPrefix.length + size + protocol.publishSuffix.length;
/** One write carries at most this many messages. */
const perWrite = Math.max(
  1,
  Math.min(
    cfg.window > 0 ? cfg.window : Infinity,
    cfg.batch > 0 ? cfg.batch : Infinity,
    Math.floor((256 * 1024) / pubLen),
  ),
);
const CARRY_BYTES = Math.max(4096, 2 * (frameLen + 128));
const readBuffer = Buffer.allocUnsafe(128 * 1024);

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
  /** Handshake complete: counts as connected. */
  handshaken = false;
  warm = false;
  inflight = false;
  closed = false;
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
  ) {}

  get role(): Role {
    return { receives: this.ridx >= 0, sends: this.sid >= 0 };
  }

  payload(buf: Buffer, at: number, length: number): void {
    if (length !== size || !wellFormed(buf, at, size)) {
      malformedCount += 1;
      noteError(
        `malformed payload of ${length} bytes: ${JSON.stringify(buf.toString('latin1', at, at + Math.min(length, 40)))}`,
      );
      return;
    }
    if (buf[at] === KIND_WARM) this.markWarm();
    else if (this.ridx >= 0) deliver(this, buf, at, currentNow);
  }

  ready(): void {
    if (this.handshaken) return;
    this.handshaken = true;
    connectedOne();
  }

  reply(): void {
    // A publish acknowledged: nothing to check.
  }

  ping(): void {
    this.socket?.write(protocol.pong);
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

  fail(message: string): void {
    if (this.closed) return;
    this.closed = true;
    if (phase === PHASE_DONE) return;
    serverClosed += 1;
    noteError(message);
    if (!this.handshaken) fatal(`connection failed during setup: ${message}`);
  }
}

const receivers: Conn[] = [];
const senders: Conn[] = [];
const conns: Conn[] = [];

function plan(): void {
  const separate = protocol.separatePublisher;
  if (cfg.mode === 'all') {
    for (let i = 0; i < cfg.receivers; i += 1) {
      if (ownerOf(i, W) !== me) continue;
      if (separate) {
        const rc = new Conn(receivers.length, -1, i);
        receivers.push(rc);
        conns.push(rc);
        const sc = new Conn(-1, i, -1);
        senders.push(sc);
        conns.push(sc);
      } else {
        const c = new Conn(receivers.length, i, i);
        receivers.push(c);
        senders.push(c);
        conns.push(c);
      }
    }
  } else {
    for (let i = 0; i < cfg.receivers; i += 1) {
      if (ownerOf(i, W) !== me) continue;
      const c = new Conn(receivers.length, -1, -1);
      receivers.push(c);
      conns.push(c);
    }
    for (let s = 0; s < S; s += 1) {
      if (ownerOf(s, W) !== me) continue;
      const c = new Conn(-1, s, -1);
      senders.push(c);
      conns.push(c);
    }
  }
  next = new Int32Array(receivers.length * S);
  ownOf = new Int32Array(receivers.length);
  for (const r of receivers) ownOf[r.ridx] = r.ownSid;
  for (let s = 0; s < S; s += 1) recomputeMin(s, false);
  for (const c of senders) {
    const one = template(size, c.sid);
    const frame = Buffer.concat([pPrefix, one, protocol.publishSuffix]);
    const batch = Buffer.allocUnsafe(perWrite * pubLen);
    for (let i = 0; i < perWrite; i += 1) frame.copy(batch, i * pubLen);
    c.batchTemplate = batch;
  }
}

let connecting = 0;
let nextToConnect = 0;
let readyCount = 0;

function connectMore(): void {
  while (connecting < cfg.connectConcurrency && nextToConnect < conns.length) {
    const c = conns[nextToConnect];
    nextToConnect += 1;
    connecting += 1;
    open(c);
  }
}

function open(c: Conn): void {
  const socket = net.connect({
    host: cfg.host,
    port: cfg.port,
    noDelay: true,
    onread: { buffer: readBuffer, callback: (n: number) => onRead(c, n) },
  });
  c.socket = socket;
  socket.once('connect', () => {
    connecting -= 1;
    const role = c.role;
    const hello = protocol.handshake(role, cfg.mode !== 'all');
    if (hello.length > 0) socket.write(hello);
    if (!protocol.awaitsReady(role)) c.ready();
    connectMore();
  });
  socket.on('error', (error: Error) => c.fail(`socket error: ${error.message}`));
  socket.on('close', () => c.fail('closed by the server'));
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
    if (c.carry === null) c.carry = Buffer.allocUnsafe(CARRY_BYTES);
    if (left > c.carry.length) c.malformed(`a frame longer than ${c.carry.length} bytes`);
    else {
      readBuffer.copy(c.carry, 0, used, n);
      c.carryLen = left;
    }
  }
  endOfRead(now);
  return true;
}

/** Whether the `size` bytes at `p` have the shape of a data message (kind, newline, separator). */
function isData(buf: Buffer, p: number): boolean {
  return buf[p] === KIND_DATA && buf[p + size - 1] === NEWLINE && buf[p + SEP_OFFSET] === SEPARATOR;
}

/** Checks every whole frame in buf[off, end); returns where the first incomplete one starts. */
function scan(c: Conn, buf: Buffer, off: number, end: number, now: number): number {
  const receives = c.ridx >= 0;
  while (off < end) {
    if (strip) {
      const p = afterNick(buf, off, end);
      if (p >= 0 && p + size <= end && isData(buf, p)) {
        if (receives) deliver(c, buf, p, now);
        off = p + size;
        continue;
      }
    } else if (end - off >= frameLen && (dpl === 0 || (buf[off] === dFirst && buf[off + dpl - 1] === dLast))) {
      const p = off + dpl;
      if (isData(buf, p) && (!suffixed || buf[off + frameLen - 1] === NEWLINE)) {
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
  histogram.record(now - readTime(buf, at));
}

function recomputeMin(sid: number, notify: boolean): void {
  let m = NO_MINIMUM;
  let k = 0;
  for (let r = 0; r < ownOf.length; r += 1) {
    if (ownOf[r] === sid) continue;
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
const publishOffset = pPrefix.length;

function pump(): void {
  pumpWanted = false;
  if (phase !== PHASE_RUN) return;
  const now = nowNs();
  let stamped = false;
  for (let i = 0; i < senders.length; i += 1) {
    const c = senders[i];
    if (c.inflight || c.closed) continue;
    const s = c.sid;
    const done = sentLocal[s];
    let allowed = perWrite;
    if (cfg.window > 0) {
      let m = NO_MINIMUM;
      for (let w = 0; w < W; w += 1) {
        const v = Atomics.load(shared.localMin, w * S + s);
        if (v < m) m = v;
      }
      if (m !== NO_MINIMUM) allowed = Math.min(allowed, m + cfg.window - done);
    }
    if (cfg.rate > 0) allowed = Math.min(allowed, Math.floor(((now - runStart) * cfg.rate) / 1e9) + 1 - done);
    if (allowed <= 0) continue;
    if (!stamped) {
      timeDigits(now, timeBuf);
      stamped = true;
    }
    const out = Buffer.allocUnsafe(allowed * pubLen);
    (c.batchTemplate as Buffer).copy(out, 0, 0, allowed * pubLen);
    for (let k = 0; k < allowed; k += 1) stamp(out, k * pubLen + publishOffset, done + k, timeBuf);
    sentLocal[s] = done + allowed;
    Atomics.store(shared.sent, s, done + allowed);
    c.inflight = true;
    (c.socket as net.Socket).write(out, c.afterWrite);
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

/** Sender 0 sends warm-up messages until every receiver has had one. */
function warmup(on: boolean): void {
  if (warmTimer !== null) clearInterval(warmTimer);
  warmTimer = null;
  const c = senders.find((sender) => sender.sid === 0);
  if (!on || c === undefined) return;
  const frame = Buffer.concat([pPrefix, template(size, 0, KIND_WARM), protocol.publishSuffix]);
  const send = (): void => {
    if (!c.closed && (c.socket as net.Socket).writableLength === 0) (c.socket as net.Socket).write(frame);
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
      if (ownOf[r] === s) continue;
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
      for (const c of conns) c.socket?.destroy();
      post({ type: 'result', stats });
      break;
    }
  }
});

plan();
if (conns.length === 0) post({ type: 'connected' });
else connectMore();
