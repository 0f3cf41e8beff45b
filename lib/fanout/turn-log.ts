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
  /** Views for one receiver's write; null while one is being written (user code re-entering gets its own). */
  private scratch: Buffer[] | null = [];
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
    // A turn whose messages each go to one room is laid out room by room (in order within each room): a member
    // of one of them takes its share as one run of the slab, not a piece per message.
    const grouped = log.roomed === count && this.forward === null ? groupByRoom(log.rooms) : null;
    const ordered = grouped === null ? log.messages : grouped.order.map((i) => log.messages[i]);
    const fanning: Fanning<R, O> = {
      log,
      slab: slabOf(ordered),
      ordered,
      wsSlab: null,
      excepted: null,
      positions: grouped?.positions ?? null,
      spans: grouped?.spans ?? null,
    };
    // Without rooms or forward filters a share is the whole turn but the messages the receiver is excepted
    // from: found once per turn here, so that each share costs its pieces, not the turn's messages.
    if ((log.roomed === 0 || grouped !== null) && this.forward === null) fanning.excepted = exceptedIndex(log.excepts);
    this.fanning = fanning;
    this.fanningChanged(true);
    try {
      const seq = log.seq;
      if (fanning.spans !== null) {
        // Rooms only: visit their members alone (a member of two rooms is visited once: its turn moves on).
        for (const room of fanning.spans.keys()) {
          for (const receiver of this.roomIndex.members(room)) if (due(receiver, seq)) this.give(receiver, fanning);
        }
      } else if (log.roomed === count) {
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
   * given out (if there is one), then the current one (before a direct send to it, or as it leaves).
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
    if (receiver.codec === 'ws') slab = fanning.wsSlab ??= this.wsSlabOf(fanning.ordered);
    const { excepted, spans, positions } = fanning;
    const span = spans === null || from > 0 ? undefined : onlyRoom(receiver.rooms, spans);
    if (excepted !== null && spans === null) {
      runsBut(share, from, log.messages.length, excepted.get(receiver));
    } else if (excepted !== null && span !== undefined) {
      const own = excepted.get(receiver);
      const skip = own?.map((i) => (positions as number[])[i]).filter((at) => at >= span[0] && at < span[1]);
      runsBut(share, span[0], span[1], skip);
    } else {
      this.collect(share, receiver, log, from, slab, positions);
    }
    this.accept(share, receiver, slab);
  }

  /** A scratch share, empty: the pooled one, or a new one when user code re-entered while one is in use. */
  private borrow(): Share {
    const share = this.shares.pop() ?? new Share();
    share.reset();
    return share;
  }

  /**
   * Puts in the share the messages `from..` of `log` meant for `receiver`, in log order: runs of `slab` (where
   * message `i` is at `positions[i]` when the slab is laid out by room), or own pieces.
   */
  private collect(
    share: Share,
    receiver: R,
    log: Log<R, O>,
    from: number,
    slab: Slab | null,
    positions: readonly number[] | null = null,
  ): void {
    const { messages, excepts, rooms, senders } = log;
    const count = messages.length;
    const forward = this.forward;
    const memberRooms = receiver.rooms;
    let start = -1;
    let end = -1;
    for (let i = from; i < count; i += 1) {
      const only = rooms[i];
      if (excepts[i] === receiver || (only !== null && !inAnyRoom(memberRooms, only))) continue;
      if (forward !== null) {
        const result = forward(messages[i], receiver, senders[i]);
        if (result !== undefined) {
          if (start >= 0) share.range(start, end);
          start = -1;
          if (result !== null) share.own(receiver.encode(result));
          continue;
        }
      }
      if (slab === null) {
        share.own(receiver.encode(messages[i]));
        continue;
      }
      const at = positions === null ? i : positions[i];
      if (at === end) {
        end += 1;
        continue;
      }
      if (start >= 0) share.range(start, end);
      start = at;
      end = at + 1;
    }
    if (start >= 0) share.range(start, end);
  }

  private accept(share: Share, receiver: R, slab: Slab | null): void {
    if (share.count > 0) {
      receiver.taking = true;
      // User code run from here (a limit listener, a forward filter's send) may need a scratch of its own.
      const scratch = this.scratch ?? [];
      this.scratch = null;
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
  /** The messages in slab order (the log's order, or laid out by room). */
  readonly ordered: readonly Buffer[];
  wsSlab: Slab | null;
  /** Without forward filters, for logs without rooms or laid out by room: each receiver's excepted messages. */
  excepted: Map<R, number[]> | null;
  /** Laid out by room: where message `i` of the log is in the slab, and each room's span of the slab. */
  readonly positions: readonly number[] | null;
  readonly spans: ReadonlyMap<string, readonly [number, number]> | null;
}

/**
 * The layout by room of a turn whose messages each go to one room (or to nobody here: presence changes, put
 * last): the log indices in slab order, each index's slab position, each room's span. Null for every other turn.
 */
function groupByRoom(
  rooms: readonly (readonly string[] | null)[],
): { order: number[]; positions: number[]; spans: Map<string, readonly [number, number]> } | null {
  const byRoom = new Map<string, number[]>();
  const nobody: number[] = [];
  for (let i = 0; i < rooms.length; i += 1) {
    const only = rooms[i];
    if (only === null || only.length > 1) return null;
    if (only.length === 0) {
      nobody.push(i);
      continue;
    }
    const list = byRoom.get(only[0]);
    if (list === undefined) byRoom.set(only[0], [i]);
    else list.push(i);
  }
  const order: number[] = [];
  const positions = new Array<number>(rooms.length);
  const spans = new Map<string, readonly [number, number]>();
  for (const [room, list] of byRoom) {
    const start = order.length;
    for (const i of list) {
      positions[i] = order.length;
      order.push(i);
    }
    spans.set(room, [start, order.length]);
  }
  for (const i of nobody) {
    positions[i] = order.length;
    order.push(i);
  }
  return { order, positions, spans };
}

/** The span of the one room of the turn a member is in, or undefined when it is in several of them (or none). */
function onlyRoom(
  memberRooms: ReadonlySet<string> | null,
  spans: ReadonlyMap<string, readonly [number, number]>,
): readonly [number, number] | undefined {
  if (memberRooms === null) return undefined;
  let found: readonly [number, number] | undefined;
  for (const room of memberRooms) {
    const span = spans.get(room);
    if (span === undefined) continue;
    if (found !== undefined) return undefined;
    found = span;
  }
  return found;
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
