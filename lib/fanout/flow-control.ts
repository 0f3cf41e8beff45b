import type { Settings } from '../options';
import { clock, type Outbound } from './outbound';

/** What flow control needs of a client. */
export interface FlowMember {
  readonly out: Outbound;
  /** Pauses reading from it: receivers are behind. */
  pauseForFlow(): void;
  /**
   * Receivers caught up: frames what it sent while it waited, at most about `bytes` of it.
   * @returns the bytes it framed
   */
  releaseFromFlow(bytes: number): number;
  /** True while input it sent waits, unframed, for receivers to catch up. */
  readonly stashed: boolean;
  /** Reading from it may resume. */
  resumeFromFlow(): void;
  /** Senders no longer wait for it: it spent its hold budget, or it stopped taking bytes. Once per episode. */
  lagged(): void;
}

/** Ms of hold budget a receiver earns back per ms spent below the mark. */
const HOLD_REFILL = 4;
/** Ms of the shared minority budget earned back per ms in which no minority held senders back. */
const MINORITY_REFILL = 0.025;
/** A holder that completed a write this recently is draining: its hold is progress, not a stall. */
const DRAINING_MS = 60;
/**
 * How long a minority receiver that fell behind holds senders back before it shows it reads while behind (a
 * write completing while it is congested): a newcomer that never reads holds them this long at most, and
 * only while the shared budget lasts.
 */
const UNPROVEN_HOLD_MS = 50;
/** A receiver written to this recently takes part in the broadcast: it counts as keeping up or behind. */
const ACTIVE_MS = 1000;
/**
 * A receiver that fell behind the senders and read its way out counts as a slow reader this long, not as
 * keeping up: while senders wait for the slowest of a slow majority the others drain in time, which does not
 * make them faster than the senders (readers at 10, 15 and 20 MB/s under a 30 MB/s flood must not be cut one
 * by one, slowest first).
 */
const SLOW_MEMORY_MS = 10_000;
/** Time behind (fading by half each second) that makes a receiver a slow reader. */
const SLOW_BEHIND_MS = 250;
/**
 * How long a receiver that fell behind may hold senders back before it shows it reads, while no receiver that
 * keeps up is kept waiting by it: long enough for a slow reader's kernel to wake the writer the first time.
 */
const UNPROVEN_IDLE_MS = 2000;
/** Most a receiver's proof window may grow to, however slowly its kernel wakes the writer. */
const MAX_PROOF_WINDOW = 10_000;
/**
 * Bytes a receiver's kernel must have taken in all before it counts as a reader without showing it again:
 * more than the kernel buffers of a connection that never reads hold.
 */
const READER_BYTES = 16 * 1024 * 1024;
/** Bytes of held senders' input framed per event-loop turn while they are released. */
const RELEASE_BYTES_PER_TURN = 256 * 1024;

/** What a check counts of the receivers that are not behind (see `census`). */
interface Census {
  readonly keepingUp: number;
  readonly slowOthers: number;
  readonly drained: number;
  readonly quiet: number;
}

/** The census of a check with nobody behind: nobody is counted. */
const NO_CENSUS: Census = { keepingUp: 0, slowOthers: 0, drained: 0, quiet: 0 };

/**
 * True when a receiver never showed it reads: it never read its way out of a backlog, and its kernel took no
 * more than the buffers of a connection that never reads hold.
 */
export function neverShownReading(out: Outbound): boolean {
  return out.relievedAt === 0 && out.takenBytes < READER_BYTES;
}

/** A receiver's time behind before this episode, faded by half for each second since `behindAt`. */
function fadedBehind(out: Outbound, now: number): number {
  return out.behindMs * 0.5 ** ((now - out.behindAt) / 1000);
}

/**
 * Who makes senders wait, and for how long.
 *
 * A receiver whose backlog passes `highWaterMark` is behind. It holds senders back (reading from them pauses,
 * TCP pushes back on them) while it shows it reads: a write to it completed, while it was behind, within its
 * proof window (in this episode or an earlier one). The window follows how often its kernel wakes the writer
 * (a slow reader's kernel takes bytes in steps of a third of its send buffer, seconds apart): twice its
 * typical gap, at least `stallTimeout`. One that stops taking bytes stops holding anyone when its window
 * passes, without being cut: its queue grows to `maxQueuedBytes` and its policy applies; it holds again once
 * it takes bytes. One that read its way out of an earlier episode in the last 10 s, or whose kernel took more
 * than 16 MiB in all, has shown it reads already: it holds at once (a released burst lands on fast readers too).
 *
 * Keeping up is counted over the receivers that got data lately (or until senders were held) and were not
 * slow readers behind lately (a client that only sends is neither); those slow readers that are not behind this moment count with the
 * readers behind, and so do laggards that read on (they hold again, uncharged, when that makes a majority). When the readers behind that showed they read are at least as many as those that
 * keep up (half is no minority), the server itself is the bottleneck: senders wait, nobody is charged. Otherwise the readers behind are
 * a minority, charged: each may hold senders for `stallTimeout` in all (earned back while it keeps up), then
 * it is lagging until it drains to half the mark; holds by minorities that are not draining also spend one
 * shared budget that refills at a fortieth of real time, so that they take at most about a twentieth of the time (20 ms checks) however
 * many receivers come and go.
 *
 * A minority's lag is a trial: the senders run free and the others are tested at their pace. A laggard that
 * reads holds again, uncharged, when the readers behind with it are at least as many as those keeping up, those
 * that drained a moment ago and those that only went quiet; the receivers that fell behind during the trial are slow readers then, and while such a slow
 * majority holds senders its slow readers are not forgotten (they are not tested again while the senders wait).
 *
 * A receiver that fell behind and has not shown it reads yet (a newcomer that never reads looks like this)
 * holds senders for a moment only (50 ms, and while the shared budget lasts) when others keep up; for
 * `stallTimeout` when the readers behind are the majority; and for up to 2 s when nobody keeps up (nobody is
 * kept waiting by it then, and a slow reader's kernel wakes the writer the first time by then). Readers that
 * never read cannot make a majority: a crowd of them cannot freeze the broadcast.
 */
export class FlowControl<M extends FlowMember> {
  /** Congested receivers (not lagging). */
  private readonly congestion = new Set<M>();
  /** The congested receivers that hold senders back now (they showed they are reading). */
  private readonly holders = new Set<M>();
  /** Receivers that spent their hold budget and are still behind. */
  private readonly laggards = new Set<M>();
  /** Senders paused because receivers are behind, in the order they were paused. */
  private readonly held = new Set<M>();
  private watchdog: NodeJS.Timeout | null = null;
  private lastTick = 0;
  private minorityBudget: number;
  private minorityStamp = Date.now();
  private releasing: NodeJS.Immediate | null = null;
  /** The last check found a majority behind, counting slow readers not behind now, and it holds senders. */
  private slowMajority = false;
  /** Held by something other than a receiver (a slow bus). */
  private external = false;
  /** When receivers began holding senders back (0: none holds them now). */
  private holdingSince = 0;

  /** Set while a fan-out runs: a release waits for its end. */
  private deferred = false;
  private releaseWanted = false;

  /**
   * @param settings read live, so config() changes apply
   * @param members the clients in the broadcast
   * @param fanOut gives out what is in the turn log now (after each released sender)
   */
  constructor(
    private readonly settings: Readonly<Settings>,
    private readonly members: () => Iterable<M>,
    private readonly fanOut: () => void,
  ) {
    this.minorityBudget = settings.stallTimeout;
  }

  /** True while some receiver (or a slow bus) holds senders back: what senders send waits, unframed. */
  get holding(): boolean {
    return this.holders.size > 0 || this.external;
  }

  /** A slow bus holds senders back (true) or no longer does (false): it is one more receiver. */
  holdExternal(holding: boolean): void {
    if (this.external === holding) return;
    this.external = holding;
    this.noteHolders(Date.now());
    if (!holding && this.holders.size === 0) this.release();
  }

  /** Senders waiting now. */
  get heldCount(): number {
    return this.held.size;
  }

  /** A receiver's backlog passed `highWaterMark`. */
  congested(member: M): void {
    const out = member.out;
    const now = Date.now();
    const { stallTimeout } = this.settings;
    // Each receiver may hold senders back for stallTimeout in all, earning it back while below the mark.
    out.holdBudget =
      out.holdBudget < 0 ? stallTimeout : Math.min(stallTimeout, out.holdBudget + (now - out.relievedAt) * HOLD_REFILL);
    out.congested = true;
    out.congestedSince = now;
    out.lagReported = false;
    // One that read its way out of an earlier episode lately, or whose kernel took more than a kernel holds
    // for a client that never reads, has shown it reads: it need not show it again before it holds senders (a
    // released burst lands on readers that keep up, too).
    if (this.reads(out, now)) out.provenAt = now;
    this.congestion.add(member);
    // One that showed lately it reads while behind holds senders at once; one that has not, until the next
    // check, while the shared budget lasts (a majority that falls behind is let hold there).
    if (this.proven(out, now) || this.minorityBudget > 0 || this.holders.size > 0) this.holders.add(member);
    this.noteHolders(now);
    this.startWatchdog(now);
  }

  /** A congested or lagging receiver completed a write: it is reading, so it may hold senders again. */
  progressed(member: M): void {
    const out = member.out;
    if (out.congested && !this.holders.has(member)) {
      this.holders.add(member);
      this.noteHolders(Date.now());
    }
  }

  /** A receiver drained to half of `highWaterMark`. */
  relieved(member: M): void {
    const out = member.out;
    const now = Date.now();
    out.behindMs = fadedBehind(out, now) + (now - out.congestedSince);
    out.behindAt = now;
    out.lagging = false;
    out.relievedAt = now;
    this.laggards.delete(member);
    this.endCongestion(member);
  }

  /**
   * A receiver's queue was dropped for the memory budget: it is not behind now, but it did not read its way
   * out either, so it is no relief: it shows again that it reads before it holds anyone.
   */
  cleared(member: M): void {
    const out = member.out;
    out.provenAt = 0;
    out.lagging = false;
    this.laggards.delete(member);
    this.endCongestion(member);
  }

  /** A sender fed a congested receiver (or sent while one was): it waits until they catch up. */
  holdSender(member: M): void {
    if (this.held.has(member)) return;
    this.held.add(member);
    member.pauseForFlow();
  }

  /** A client left the broadcast: senders no longer wait for it. */
  forgetReceiver(member: M): void {
    this.laggards.delete(member);
    member.out.lagging = false;
    this.endCongestion(member);
  }

  /** A client's input is all out, or dropped: it no longer waits to send. */
  forgetSender(member: M): void {
    this.held.delete(member);
  }

  /** A fan-out starts (true) or ends (false): releases wait for its end, so they are fanned out one by one. */
  fanning(active: boolean): void {
    this.deferred = active;
    if (!active && this.releaseWanted) {
      this.releaseWanted = false;
      this.release();
    }
  }

  /** Stops the timers (the multiplexer is gone). */
  stop(): void {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = null;
    if (this.releasing !== null) clearImmediate(this.releasing);
    this.releasing = null;
  }

  /**
   * How long after its last completed write a congested receiver still counts as reading: twice the gaps its
   * kernel shows between completions, and at least `stallTimeout`.
   */
  private proofWindow(out: Outbound): number {
    return Math.min(MAX_PROOF_WINDOW, Math.max(this.settings.stallTimeout, 2 * out.typicalGap));
  }

  /**
   * True when a congested receiver showed it reads while behind (a write completed while it was behind, in
   * this episode or an earlier one) within its proof window: a reader whose backlog hovers about the mark is
   * not asked to prove itself again at each crossing.
   */
  private proven(out: Outbound, now: number): boolean {
    return out.provenAt > 0 && now - out.provenAt <= this.proofWindow(out);
  }

  /** True when a receiver read its way out of an earlier episode lately, or its kernel took a lot in all. */
  private reads(out: Outbound, now: number): boolean {
    if (out.takenBytes >= READER_BYTES) return true;
    return out.provenAt > 0 && out.relievedAt >= out.provenAt && now - out.provenAt <= SLOW_MEMORY_MS;
  }

  /**
   * True when a receiver is a slow reader: behind for a quarter of a second in all lately (time behind fades by half
   * each second), remembered for 10 s. A reader behind for a moment (a burst landed on it) is not slow.
   */
  private slow(out: Outbound, now: number): boolean {
    const behind = out.congested || out.lagging ? now - out.congestedSince : 0;
    if (fadedBehind(out, now) + behind >= SLOW_BEHIND_MS) out.slowAt = now;
    return out.slowAt > 0 && now - out.slowAt <= SLOW_MEMORY_MS;
  }

  /**
   * The receivers that took part in the broadcast lately (got data within a second, or within a second before
   * receivers began holding senders back) and are not behind: those
   * that keep up, and the slow readers among them (they drained only while senders waited, and count with the
   * readers behind). A client that only sends is neither.
   */
  private census(now: number): Census {
    const halfMark = this.settings.highWaterMark / 2;
    let keepingUp = 0;
    let slowOthers = 0;
    let drained = 0;
    let quiet = 0;
    // Got data until the senders were held: it went quiet waiting for the receivers behind, and counts as it was
    // (a minority whose hold outlasts ACTIVE_MS must not become a majority by silencing the others).
    const waitingSince = this.holdingSince > 0 ? this.holdingSince - ACTIVE_MS : Infinity;
    for (const member of this.members()) {
      const out = member.out;
      if (out.congested || out.lagging) continue;
      if (now - out.lastWriteAt > ACTIVE_MS && out.lastWriteAt < waitingSince) {
        if (out.lastWriteAt > 0) quiet += 1; // got data once, nothing lately (nothing was sent, or senders wait)
        continue;
      }
      if (this.slow(out, now)) {
        slowOthers += 1;
        // While a slow majority holds senders, its slow readers are not tested again: still slow.
        if (this.slowMajority) out.slowAt = now;
      } else if (now - out.provenAt > ACTIVE_MS && out.backlog <= halfMark) keepingUp += 1;
      else drained += 1;
    }
    return { keepingUp, slowOthers, drained, quiet };
  }

  private endCongestion(member: M): void {
    member.out.congested = false;
    this.congestion.delete(member);
    if (!this.holders.delete(member)) return;
    this.noteHolders(Date.now());
    if (!this.holding) this.release();
  }

  /** Keeps `holdingSince`: when senders began to be held back (by receivers or a slow bus), 0 while they are not. */
  private noteHolders(now: number): void {
    if (!this.holding) this.holdingSince = 0;
    else if (this.holdingSince === 0) this.holdingSince = now;
  }

  private startWatchdog(now: number): void {
    if (this.watchdog !== null) return;
    // Time no minority held senders back since the watchdog last ran refills the shared budget.
    this.refillMinority(now);
    this.lastTick = now;
    const { stallTimeout } = this.settings;
    this.watchdog = setInterval(() => this.tick(), Math.max(5, Math.min(20, stallTimeout / 10)));
    this.watchdog.unref();
  }

  private refillMinority(now: number): void {
    const { stallTimeout } = this.settings;
    this.minorityBudget = Math.min(stallTimeout, this.minorityBudget + (now - this.minorityStamp) * MINORITY_REFILL);
    this.minorityStamp = now;
  }

  private tick(): void {
    const now = Date.now();
    const elapsed = now - this.lastTick;
    this.lastTick = now;
    clock.now = now;
    const { highWaterMark, stallTimeout } = this.settings;
    for (const member of this.congestion) {
      // Drained without a completion we saw (a small highWaterMark).
      if (member.out.backlog <= highWaterMark / 2) this.relieved(member);
    }
    // Readers that showed they read while behind, within their proof window, and those that have not (yet).
    let proven = 0;
    const candidates: M[] = [];
    for (const member of this.congestion) {
      const out = member.out;
      if (this.proven(out, now)) {
        proven += 1;
        candidates.push(member);
      } else if (now - out.congestedSince <= UNPROVEN_IDLE_MS) {
        candidates.push(member);
      }
    }
    // Readers that lagged as a minority and read on: when slow readers fall behind after them (their kernels
    // took more first), the slow readers are a majority after all, and those hold senders again.
    const reading: M[] = [];
    for (const member of this.laggards) if (this.proven(member.out, now)) reading.push(member);
    const { keepingUp, slowOthers, drained, quiet } =
      candidates.length + reading.length === 0 ? NO_CENSUS : this.census(now);
    // Only readers that showed they read make a majority (readers that never read cannot freeze anyone); slow
    // readers not behind this moment count with them (one hovering about the mark must not flip the verdict).
    // Half is not a minority: a tie holds senders too (nobody is cut for being as slow as the rest).
    let majority = proven + slowOthers > 0 && proven + slowOthers >= keepingUp;
    if (reading.length > 0) {
      let slowBehind = 0;
      for (const member of candidates) if (this.proven(member.out, now) && this.slow(member.out, now)) slowBehind += 1;
      // Readers behind for a moment only (a burst) do not make laggards hold again: they are not slow.
      const fastBehind = proven - slowBehind;
      // Receivers that only went quiet count against it too: a laggard let hold while nothing flows would keep
      // them quiet, and hold everyone for as long as it reads a little now and then.
      if (reading.length + slowBehind + slowOthers >= keepingUp + fastBehind + drained + quiet) {
        this.behindInTrial(reading, now);
        for (const member of reading) {
          this.unlag(member);
          candidates.push(member);
        }
        majority = true;
      }
    }
    const minority = candidates.length > 0 && !majority && keepingUp > 0;
    const holding = new Set<M>();
    let stalling = false;
    for (const member of candidates) {
      const out = member.out;
      if (!this.proven(out, now)) {
        // One that has not shown it reads: while nobody is kept waiting by it (no receiver keeps up), until it
        // shows it; with a majority of readers behind, for stallTimeout; otherwise a moment, while the shared
        // budget lasts.
        const held = now - out.congestedSince;
        const allowed = keepingUp === 0 ? UNPROVEN_IDLE_MS : majority ? stallTimeout : UNPROVEN_HOLD_MS;
        if (held > allowed || (minority && this.minorityBudget <= 0)) continue;
        stalling = true; // a hold by a reader that has not shown it reads is never progress
      } else if (now - out.progressAt > DRAINING_MS) {
        stalling = true;
      }
      holding.add(member);
    }
    if (minority && stalling) {
      // Overdrawn between checks: the debt is paid back before the next minority may hold.
      this.minorityBudget = Math.max(-stallTimeout, this.minorityBudget - elapsed);
      this.minorityStamp = now;
    } else {
      this.refillMinority(now);
    }
    for (const member of this.holders) {
      if (holding.has(member)) continue;
      this.holders.delete(member);
      // It stopped taking bytes: senders no longer wait for it (it holds them again once it takes some).
      if (!member.out.lagReported) {
        member.out.lagReported = true;
        member.lagged();
      }
    }
    for (const member of holding) {
      this.holders.add(member);
      if (!minority) continue;
      const out = member.out;
      out.holdBudget -= Math.min(elapsed, now - out.congestedSince);
      // Once the shared budget is spent, holders that are not draining stop holding anyone back.
      if (out.holdBudget <= 0 || (this.minorityBudget <= 0 && now - out.progressAt > DRAINING_MS))
        this.lag(member, now);
    }
    this.slowMajority = majority && slowOthers > 0 && holding.size > 0;
    this.noteHolders(now);
    if (!this.holding) this.release();
    // Laggards are checked on while they lag: when those that kept up leave or lag too, the ones that read
    // are a majority after all (nobody need be congested then).
    if (this.congestion.size === 0 && this.laggards.size === 0 && this.watchdog !== null) {
      clearInterval(this.watchdog);
      this.watchdog = null;
    }
  }

  /**
   * Laggards that read are let hold again: the receivers that fell behind since the first of them lagged (the
   * senders ran free then) are slow readers, even those that drained already (a hold began for them).
   */
  private behindInTrial(reading: readonly M[], now: number): void {
    let since = now;
    for (const member of reading) since = Math.min(since, member.out.laggedAt);
    for (const member of this.members()) {
      const out = member.out;
      if (out.congestedSince >= since && now - out.lastWriteAt <= ACTIVE_MS) out.slowAt = now;
    }
  }

  /** A laggard that reads is one of a majority behind after all: it holds senders again, uncharged. */
  private unlag(member: M): void {
    const out = member.out;
    out.lagging = false;
    out.congested = true;
    this.laggards.delete(member);
    this.congestion.add(member);
  }

  private lag(member: M, now: number): void {
    const out = member.out;
    out.holdBudget = 0;
    out.congested = false;
    out.lagging = true;
    out.laggedAt = now;
    this.laggards.add(member);
    this.congestion.delete(member);
    this.holders.delete(member);
    this.noteHolders(now);
    if (!out.lagReported) {
      out.lagReported = true;
      member.lagged();
    }
  }

  /**
   * Nobody holds senders back now: they go on, each first framing what it sent while it waited. The work
   * is spread over event-loop turns, and stops as soon as a released sender puts a receiver behind again.
   */
  private release(): void {
    if (this.deferred) {
      this.releaseWanted = true;
      return;
    }
    if (this.releasing !== null) return;
    let budget = RELEASE_BYTES_PER_TURN;
    for (const sender of this.held) {
      if (this.holding) return; // a released sender put a receiver behind again: the rest wait
      budget -= sender.releaseFromFlow(budget);
      this.fanOut(); // so that a receiver it puts behind is seen now
      if (this.holding) return;
      if (!sender.stashed) {
        this.held.delete(sender);
        sender.resumeFromFlow();
      }
      if (budget <= 0) {
        if (this.held.size > 0) this.continueNextTurn();
        return;
      }
    }
  }

  private continueNextTurn(): void {
    this.releasing = setImmediate(() => {
      this.releasing = null;
      this.release();
    });
  }
}
