import type { Codec } from '../transport/connection';
import { clock, type Outbound } from './outbound';
import { inAnyRoom, type RoomIndex } from './rooms';
import { Share } from './share';
import { slabOf, type Slab } from './slab';

/** What the turn log needs of a receiver. */
export interface Receiver {
  readonly out: Outbound;
  readonly codec: Codec;
  /** The rooms it is in (null: none). */
  readonly rooms: ReadonlySet<string> | null;
  /** True while its share of a fan-out is being taken: sends made by user code meanwhile come after it. */
  taking: boolean;
  /** One message of the stream codec in its connection's codec. */
  encode(message: Buffer): Buffer;
  /** Its share was taken: what user code sent it meanwhile goes now. */
  afterShare(): void;
  /** It has data queued that was not written yet: write it at the end of the turn. */
  readonly scheduleFlush: () => void;
}

/**
 * What a forward filter made of one delivery: `undefined` to send the shared bytes, a Buffer to send instead
 * (in the stream codec, as given), null to skip the receiver. Guarded by the caller: it never throws.
 */
export type Forward<R, O> = (message: Buffer, receiver: R, sender: O | null) => Buffer | null | undefined;

/** One turn's broadcasts, in the order they were made, with whom each goes to. */
interface Log<R, O> {
  messages: Buffer[];
  /** Who sent each (for forward filters and the bus), null for server code. */
  senders: (O | null)[];
  /** A receiver each skips (its sender, unless sendToOrigin), or null. */
  excepts: (R | null)[];
  /** The rooms each goes to, or null for everyone. */
  rooms: (readonly string[] | null)[];
  /** Whether each goes to the bus too (not `local`, and not come from it). */
  toBus: boolean[];
  /** What each is: 0 a message; otherwise a presence change for the bus, delivered to nobody here. */
  kinds: number[];
  /** Bytes in it, each message counted with {@link LOG_MESSAGE_OVERHEAD}. */
  bytes: number;
  /** How many of its messages go to rooms only (so a fan-out may visit only those rooms' members). */
  roomed: number;
  seq: number;
}

/** What a message in the log costs beyond its bytes, for the early fan-out threshold. */
export const LOG_MESSAGE_OVERHEAD = 128;

/** Where a turn's messages go besides local receivers: the bus. */
export type Outlet<O> = (
  messages: readonly Buffer[],
  senders: readonly (O | null)[],
  rooms: readonly (readonly string[] | null)[],
  toBus: readonly boolean[],
  kinds: readonly number[],
) => void;

/**
 * The turn log: what is broadcast in one event-loop turn is appended here once, whatever the number of
 * receivers, and given out once per turn (or earlier, once it holds `threshold` bytes). A fan-out copies the
 * turn's messages into one slab per codec in use, then each receiver takes its share of it: the messages
 * meant for it (target, rooms, forward filter) as runs of the slab, written in one system call when it keeps
 * up, queued as ranges when it is behind. The per-message cost is one copy; the per-receiver cost one write.
 */
export class TurnLog<R extends Receiver, O> {
  /**
   * A member receives from the log whose number it holds (`out.turnSeq`), from message `out.turnFrom` on; a
   * member whose number is lower was not visited by the fan-outs in between (they had nothing for it) and
   * receives the next log from its start.
   */
  private current: Log<R, O> = newLog(0);
  private spare: Log<R, O> = newLog(0);
  /** The log being given out, while a fan-out runs. */
  private fanning: Fanning<R, O> | null = null;
  private flushTimer: NodeJS.Immediate | null = null;
  /** Scratch shares: one per receiver being served, more only when user code re-enters (a catch-up). */
  private readonly shares: Share[] = [];
  private scratch: Buffer[] = [];
  private dirty: R[] = [];
  private spareDirty: R[] = [];
  /** Work that must wait for the end of the fan-out in progress (events user code may react to). */
  private after: (() => void)[] = [];

  /** A turn's log goes out early once it holds this many bytes. */
  threshold = 256 * 1024;
  /** Set when a forward filter is registered (or overridden): called for every delivery. */
  forward: Forward<R, O> | null = null;
  /** Set when a bus is attached. */
  outlet: Outlet<O> | null = null;

  /**
   * @param members every receiver, in the order they joined
   * @param roomIndex who is in which room
   * @param wsEncode one stream message as WebSocket frames
   * @param fanningChanged told when a fan-out starts and ends
   */
  constructor(
    private readonly members: ReadonlySet<R>,
    private readonly roomIndex: RoomIndex<R>,
    private readonly wsEncode: (message: Buffer) => Buffer,
    private readonly fanningChanged: (active: boolean) => void,
  ) {}

  /** The number of the log being filled: a joiner receives from here on. */
  get seq(): number {
    return this.current.seq;
  }

  /** Messages in the log being filled. */
  get length(): number {
    return this.current.messages.length;
  }

  /** True while a fan-out runs. */
  get busy(): boolean {
    return this.fanning !== null;
  }

  /** Makes a new member receive what is broadcast from now on, and nothing before. */
  enter(receiver: R): void {
    receiver.out.turnSeq = this.current.seq;
    receiver.out.turnFrom = this.current.messages.length;
  }

  /** Takes a receiver out: nothing more is given to it. */
  exit(receiver: R): void {
    receiver.out.turnSeq = -1;
  }

  /**
   * Appends one broadcast to this turn's log; with `kind` other than 0, a presence change that only the bus
   * carries (in the same order as the messages around it).
   */
  append(
    message: Buffer,
    sender: O | null,
    except: R | null,
    rooms: readonly string[] | null,
    toBus: boolean,
    kind = 0,
  ): void {
    const log = this.current;
    if (log.messages.length === 0) this.schedule();
    log.messages.push(message);
    log.senders.push(sender);
    log.excepts.push(except);
    log.rooms.push(kind === 0 ? rooms : NOBODY);
    log.toBus.push(toBus);
    log.kinds.push(kind);
    if (kind !== 0) rooms = NOBODY;
    log.bytes += message.length + LOG_MESSAGE_OVERHEAD;
    if (rooms !== null) log.roomed += 1;
    // A large turn goes out early, before it could fill a queue on its own: the bounds keep up.
    if (log.bytes >= this.threshold && this.fanning === null) this.fanOut();
  }

  /** Runs `work` once the fan-out in progress is over (now, when none is). */
  defer(work: () => void): void {
    if (this.fanning === null) work();
    else this.after.push(work);
  }

  /** Writes `receiver`'s queue at the end of this turn. */
  flushLater(receiver: R): void {
    this.dirty.push(receiver);
    this.schedule();
  }

  /**
   * Gives this turn's log to every member it concerns. Broadcasts made meanwhile (by user code called from
   * here) go to the next log.
   */
  fanOut(): void {
    const log = this.current;
    const count = log.messages.length;
    if (count === 0 || this.fanning !== null) return;
    this.current = this.spare;
    this.current.seq = log.seq + 1;
    clock.now = Date.now();
    const slab = slabOf(log.messages);
    const fanning: Fanning<R, O> = { log, slab, wsSlab: null, excepted: null };
    // Without rooms or forward filters a share is the whole turn but the messages the receiver is excepted
    // from: found once per turn here, so that each share costs its pieces, not the turn's messages.
    if (log.roomed === 0 && this.forward === null) fanning.excepted = exceptedIndex(log.excepts);
    this.fanning = fanning;
    this.fanningChanged(true);
    try {
      const seq = log.seq;
      if (log.roomed === count) {
        // Rooms only: visit their members alone (a member of two rooms is visited once: its turn moves on).
        for (let i = 0; i < count; i += 1) {
          for (const room of log.rooms[i] as readonly string[]) {
            for (const receiver of this.roomIndex.members(room)) if (due(receiver, seq)) this.give(receiver, fanning);
          }
        }
      } else {
        for (const receiver of this.members) if (due(receiver, seq)) this.give(receiver, fanning);
      }
      if (this.outlet !== null) this.outlet(log.messages, log.senders, log.rooms, log.toBus, log.kinds);
    } finally {
      this.fanning = null;
      clearLog(log);
      this.spare = log;
      this.fanningChanged(false);
    }
    const after = this.after;
    if (after.length > 0) {
      this.after = [];
      for (const work of after) work();
    }
  }

  /**
   * Gives one member what the turn's logs hold for it and it has not taken yet: the rest of the log being
   * given out, if any, then the current one (before a direct send to it, or as it leaves).
   */
  catchUp(receiver: R): void {
    const fanning = this.fanning;
    const out = receiver.out;
    if (fanning !== null && due(receiver, fanning.log.seq) && !receiver.taking) this.give(receiver, fanning);
    const log = this.current;
    const from = out.turnSeq === log.seq ? out.turnFrom : 0;
    if (due(receiver, log.seq) && from < log.messages.length) {
      // Not given out yet, so there is no slab: its messages go as its own.
      const share = this.borrow();
      this.collect(share, receiver, log, from, null);
      out.turnSeq = log.seq;
      out.turnFrom = log.messages.length;
      this.accept(share, receiver, null);
    }
  }

  /** Stops the timer and forgets the log (the multiplexer is gone). */
  stop(): void {
    if (this.flushTimer !== null) clearImmediate(this.flushTimer);
    this.flushTimer = null;
    clearLog(this.current);
    this.dirty = [];
  }

  private schedule(): void {
    if (this.flushTimer === null) this.flushTimer = setImmediate(this.flush);
  }

  /** Once per turn: gives the log out, then writes every receiver that got data of its own. */
  private readonly flush = (): void => {
    this.flushTimer = null;
    this.fanOut();
    const dirty = this.dirty;
    this.dirty = this.spareDirty;
    for (let i = 0; i < dirty.length; i += 1) dirty[i].out.pump();
    dirty.length = 0;
    this.spareDirty = dirty;
    if (this.current.messages.length > 0 || this.dirty.length > 0) this.schedule(); // sent from user code meanwhile
  };

  private give(receiver: R, fanning: Fanning<R, O>): void {
    const out = receiver.out;
    const log = fanning.log;
    const from = out.turnSeq === log.seq ? out.turnFrom : 0;
    out.turnSeq = log.seq + 1;
    out.turnFrom = 0;
    const share = this.borrow();
    let slab = fanning.slab;
    if (receiver.codec === 'ws') slab = fanning.wsSlab ??= this.wsSlabOf(log.messages);
    if (fanning.excepted !== null) runsBut(share, from, log.messages.length, fanning.excepted.get(receiver));
    else this.collect(share, receiver, log, from, slab);
    this.accept(share, receiver, slab);
  }

  /** A scratch share, empty: the pooled one, or a new one when user code re-entered while one is in use. */
  private borrow(): Share {
    const share = this.shares.pop() ?? new Share();
    share.reset();
    return share;
  }

  /** Puts in the share the messages `from..` of `log` meant for `receiver`: runs of `slab`, or own pieces. */
  private collect(share: Share, receiver: R, log: Log<R, O>, from: number, slab: Slab | null): void {
    const { messages, excepts, rooms, senders } = log;
    const count = messages.length;
    const forward = this.forward;
    const memberRooms = receiver.rooms;
    let run = -1;
    for (let i = from; i < count; i += 1) {
      const only = rooms[i];
      if (excepts[i] === receiver || (only !== null && !inAnyRoom(memberRooms, only))) {
        if (run >= 0) share.range(run, i);
        run = -1;
        continue;
      }
      if (forward !== null) {
        const result = forward(messages[i], receiver, senders[i]);
        if (result !== undefined) {
          if (run >= 0) share.range(run, i);
          run = -1;
          if (result !== null) share.own(receiver.encode(result));
          continue;
        }
      }
      if (slab === null) share.own(receiver.encode(messages[i]));
      else if (run < 0) run = i;
    }
    if (run >= 0) share.range(run, count);
  }

  private accept(share: Share, receiver: R, slab: Slab | null): void {
    if (share.count > 0) {
      receiver.taking = true;
      // User code run from here (a limit listener, a forward filter's send) may need a scratch of its own.
      const scratch = this.scratch;
      this.scratch = [];
      try {
        receiver.out.accept(share, slab, scratch);
      } finally {
        receiver.taking = false;
        share.clear();
        scratch.length = 0;
        this.scratch = scratch;
      }
    }
    this.shares.push(share);
    receiver.afterShare();
  }

  private wsSlabOf(messages: readonly Buffer[]): Slab {
    const frames = new Array<Buffer>(messages.length);
    for (let i = 0; i < messages.length; i += 1) frames[i] = this.wsEncode(messages[i]);
    return slabOf(frames);
  }
}

/** A log being given out: its slab (and WebSocket frames, once a WebSocket receiver needs them). */
interface Fanning<R, O> {
  readonly log: Log<R, O>;
  readonly slab: Slab;
  wsSlab: Slab | null;
  /** For logs without rooms or forward filters: the messages each receiver is excepted from, in order. */
  excepted: Map<R, number[]> | null;
}

/** The messages each receiver is excepted from, by receiver, in log order. */
function exceptedIndex<R>(excepts: readonly (R | null)[]): Map<R, number[]> {
  const index = new Map<R, number[]>();
  for (let i = 0; i < excepts.length; i += 1) {
    const except = excepts[i];
    if (except === null) continue;
    const list = index.get(except);
    if (list === undefined) index.set(except, [i]);
    else list.push(i);
  }
  return index;
}

/** Puts in the share messages `from..count` but those at `skip` (ascending), as runs. */
function runsBut(share: Share, from: number, count: number, skip: readonly number[] | undefined): void {
  let start = from;
  if (skip !== undefined) {
    for (const at of skip) {
      if (at < start) continue;
      if (at > start) share.range(start, at);
      start = at + 1;
    }
  }
  if (start < count) share.range(start, count);
}

/** True when `receiver` (a member) has not taken log `seq` yet. */
function due(receiver: Receiver, seq: number): boolean {
  const next = receiver.out.turnSeq;
  return next >= 0 && next <= seq;
}

/** The rooms of a presence change: nobody here gets it. */
const NOBODY: readonly string[] = Object.freeze([]);

function newLog<R, O>(seq: number): Log<R, O> {
  return { messages: [], senders: [], excepts: [], rooms: [], toBus: [], kinds: [], bytes: 0, roomed: 0, seq };
}

function clearLog<R, O>(log: Log<R, O>): void {
  log.messages.length = 0;
  log.senders.length = 0;
  log.excepts.length = 0;
  log.rooms.length = 0;
  log.toBus.length = 0;
  log.kinds.length = 0;
  log.bytes = 0;
  log.roomed = 0;
}
