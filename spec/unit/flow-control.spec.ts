import { FlowControl, type FlowMember } from '../../lib/fanout/flow-control';
import { Share } from '../../lib/fanout/share';
import { slabOf } from '../../lib/fanout/slab';
import type { Settings } from '../../lib/options';
import { OutboundPeer, RecordingAccount, settingsWith } from '../helpers/fanout';
import { MemoryConnection } from '../helpers/memory-connection';

const HWM = 10_000;
const STALL = 250;
const CHUNK = 64 * 1024;

/**
 * A client as the flow control sees it: a real Outbound over a memory connection whose kernel takes nothing
 * until the test completes writes, wired to the flow control as a session is, and an inbound side reduced to
 * what flow control drives: paused or not, and `stash` bytes of unframed input framed a chunk at a time.
 */
class FlowPeer extends OutboundPeer implements FlowMember {
  flow: FlowControl<FlowPeer> | null = null;
  paused = false;
  resumes = 0;
  lags = 0;
  laggedAt: number | null = null;
  congestedAt: number | null = null;
  /** Unframed input waiting, in bytes. */
  stash = 0;
  /** Bytes framed by each releaseFromFlow call. */
  readonly released: number[] = [];

  constructor(
    readonly name: string,
    settings: Settings,
  ) {
    super(new MemoryConnection().stall(), settings, new RecordingAccount());
  }

  private get control(): FlowControl<FlowPeer> {
    if (this.flow === null) throw new Error('not wired');
    return this.flow;
  }

  override congested(): void {
    this.congestedAt = Date.now();
    this.control.congested(this);
  }

  override relieved(): void {
    this.control.relieved(this);
  }

  override progressed(): void {
    this.control.progressed(this);
  }

  pauseForFlow(): void {
    this.paused = true;
  }

  releaseFromFlow(bytes: number): number {
    let fed = 0;
    while (this.stash > 0 && fed < bytes) {
      const chunk = Math.min(CHUNK, this.stash);
      this.stash -= chunk;
      fed += chunk;
    }
    this.released.push(fed);
    return fed;
  }

  get stashed(): boolean {
    return this.stash > 0;
  }

  resumeFromFlow(): void {
    this.paused = false;
    this.resumes += 1;
  }

  lagged(): void {
    this.lags += 1;
    this.laggedAt = Date.now();
  }

  /** Gives it `bytes` the kernel does not take: its backlog grows by that much. */
  fill(bytes: number): this {
    const share = new Share();
    share.range(0, 1);
    this.out.accept(share, slabOf([Buffer.alloc(bytes)]), []);
    return this;
  }

  /** The kernel takes `bytes` of its backlog (a completed write). */
  drip(bytes = 100): void {
    this.connection.complete(bytes);
  }
}

/**
 * A flow control over peers, the number of members in the broadcast set by the test: the peers it made, and
 * as many more receivers that keep up (they get data and are not behind).
 */
class Fixture {
  members: number;
  private readonly peers: FlowPeer[] = [];
  private readonly keepers: FlowPeer[] = [];
  readonly settings = settingsWith({ highWaterMark: HWM, stallTimeout: STALL, maxQueuedBytes: 1 << 30 });
  fanOuts = 0;
  onFanOut: () => void = () => undefined;
  readonly flow: FlowControl<FlowPeer>;

  constructor(members: number) {
    this.members = members;
    this.flow = new FlowControl<FlowPeer>(
      this.settings,
      () => this.everyone(),
      () => {
        this.fanOuts += 1;
        this.onFanOut();
      },
    );
  }

  /** A receiver (it takes part in the broadcast), or with `receives` false a client that only sends. */
  peer(name: string, receives = true): FlowPeer {
    const made = new FlowPeer(name, this.settings);
    const peer = receives ? this.active(made) : made;
    peer.flow = this.flow;
    this.peers.push(peer);
    return peer;
  }

  /** The members: the peers, then receivers that keep up up to `members`. */
  private everyone(): FlowPeer[] {
    while (this.peers.length + this.keepers.length < this.members) {
      this.keepers.push(this.active(new FlowPeer(`keeper${this.keepers.length}`, this.settings)));
    }
    return [...this.peers, ...this.keepers.slice(0, Math.max(0, this.members - this.peers.length))];
  }

  /** Makes a peer count as taking part in the broadcast (written to lately). */
  private active(peer: FlowPeer): FlowPeer {
    Object.defineProperty(peer.out, 'lastWriteAt', { get: () => Date.now(), set: () => undefined });
    return peer;
  }

  /** A sender held back, with `stash` bytes of input waiting. */
  sender(name: string, stash = 0): FlowPeer {
    const peer = this.peer(name, false);
    peer.stash = stash;
    this.flow.holdSender(peer);
    return peer;
  }
}

/** Advances the clock by `ms` in steps of `every`, calling `each` before each step. */
function run(ms: number, every: number, each: () => void = () => undefined): void {
  for (let elapsed = 0; elapsed < ms; elapsed += every) {
    each();
    jest.advanceTimersByTime(every);
  }
}

let fixture: Fixture;
const START = 1_000_000;
beforeEach(() => {
  jest.useFakeTimers({ now: START });
});
afterEach(() => {
  fixture?.flow.stop();
  jest.useRealTimers();
});

describe('FlowControl', () => {
  describe('holding senders back', () => {
    it('holds senders back while a congested receiver shows it is reading', () => {
      fixture = new Fixture(4);
      expect(fixture.flow.holding).toBe(false);
      fixture.peer('r').fill(HWM * 5);
      expect(fixture.flow.holding).toBe(true);
      const sender = fixture.sender('s');
      expect(sender.paused).toBe(true);
      expect(fixture.flow.heldCount).toBe(1);
      fixture.flow.holdSender(sender);
      expect(fixture.flow.heldCount).toBe(1);
    });

    it('lets senders go once the receiver drains to half of highWaterMark', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 2);
      const sender = fixture.sender('s');
      receiver.drip(HWM * 2 - HWM / 2);
      expect(fixture.flow.holding).toBe(false);
      expect(sender.paused).toBe(false);
      expect(fixture.flow.heldCount).toBe(0);
      expect(receiver.out.congested).toBe(false);
    });

    it('lets senders go when the receiver leaves the broadcast', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 2);
      const sender = fixture.sender('s');
      fixture.flow.forgetReceiver(receiver);
      expect(fixture.flow.holding).toBe(false);
      expect(sender.paused).toBe(false);
    });

    it('no longer waits to release a sender it was told to forget', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 2);
      const sender = fixture.sender('s');
      fixture.flow.forgetSender(sender);
      expect(fixture.flow.heldCount).toBe(0);
      receiver.drip(HWM * 2);
      expect(sender.resumes).toBe(0);
    });
  });

  describe('a congested minority', () => {
    it('spends its hold budget while it holds senders, and is lagging after stallTimeout in all', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(1_000_000);
      const sender = fixture.sender('s');
      run(STALL - 50, 20, () => receiver.drip()); // it reads, slowly: it stays far above the mark
      expect(receiver.out.lagging).toBe(false);
      expect(fixture.flow.holding).toBe(true);
      expect(sender.paused).toBe(true);
      run(100, 20, () => receiver.drip());
      expect(receiver.out.lagging).toBe(true);
      expect(receiver.lags).toBe(1);
      expect(fixture.flow.holding).toBe(false);
      expect(sender.paused).toBe(false);
      run(1000, 20, () => receiver.drip());
      expect(receiver.lags).toBe(1); // once per episode
      expect(fixture.flow.holding).toBe(false); // senders do not wait for a lagging receiver
    });

    it('is no longer lagging once it drains to half the mark, and earns its budget back while below it', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(100_000);
      run(STALL + 100, 20, () => receiver.drip());
      expect(receiver.out.lagging).toBe(true);
      receiver.drip(100_000);
      expect(receiver.out.lagging).toBe(false);
      jest.advanceTimersByTime(25); // 25 ms below the mark earn 100 ms of holding back
      receiver.fill(HWM * 100);
      expect(fixture.flow.holding).toBe(true);
      run(60, 20, () => receiver.drip());
      expect(receiver.out.lagging).toBe(false);
      run(100, 20, () => receiver.drip());
      expect(receiver.out.lagging).toBe(true);
    });

    it('has its whole budget again after a long enough time below the mark', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(100_000);
      run(STALL + 100, 20, () => receiver.drip());
      receiver.drip(100_000);
      jest.advanceTimersByTime(STALL); // earns 4 ms per ms: the whole budget back, and no more
      receiver.fill(HWM * 100);
      run(STALL - 50, 20, () => receiver.drip());
      expect(receiver.out.lagging).toBe(false);
      run(100, 20, () => receiver.drip());
      expect(receiver.out.lagging).toBe(true);
    });
  });

  describe('a congested majority', () => {
    it('is not charged: the server is the bottleneck, senders wait, nobody is lagging', () => {
      fixture = new Fixture(2);
      const receivers = [fixture.peer('a').fill(1_000_000), fixture.peer('b').fill(1_000_000)];
      const sender = fixture.sender('s');
      run(5000, 20, () => receivers.forEach((receiver) => receiver.drip()));
      expect(receivers.map((receiver) => receiver.out.lagging)).toEqual([false, false]);
      expect(receivers.map((receiver) => receiver.lags)).toEqual([0, 0]);
      expect(receivers.map((receiver) => receiver.out.holdBudget)).toEqual([STALL, STALL]);
      expect(fixture.flow.holding).toBe(true);
      expect(sender.paused).toBe(true);
    });
  });

  describe('a tie', () => {
    it('is no minority: a reader behind as one of two holds senders, uncharged', () => {
      fixture = new Fixture(3); // the slow reader, a sender, one receiver that keeps up
      const slow = fixture.peer('slow').fill(1_000_000);
      const sender = fixture.sender('s');
      run(2000, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(false);
      expect(slow.lags).toBe(0);
      expect(slow.out.holdBudget).toBe(STALL);
      expect(fixture.flow.holding).toBe(true);
      expect(sender.paused).toBe(true);
    });
  });

  describe('readers that fall behind one after another', () => {
    it('lets a reader that lagged as a minority hold again, uncharged, once the readers behind are a majority', () => {
      fixture = new Fixture(3);
      const first = fixture.peer('first').fill(1_000_000);
      const second = fixture.peer('second');
      const third = fixture.peer('third');
      const sender = fixture.sender('s');
      run(STALL + 100, 20, () => first.drip()); // the others keep up: a minority, charged, then lagging
      expect(first.out.lagging).toBe(true);
      expect(sender.paused).toBe(false);
      // Their kernels took more first: they fall behind too, and read, as the lagging one still does; behind
      // for more than half a second, they are slow readers, not readers a burst landed on.
      second.fill(1_000_000);
      third.fill(1_000_000);
      run(600, 20, () => [first, second, third].forEach((receiver) => receiver.drip()));
      expect(first.out.lagging).toBe(false);
      expect(first.out.congested).toBe(true);
      expect(fixture.flow.holding).toBe(true);
      fixture.flow.holdSender(sender);
      expect(sender.paused).toBe(true);
      run(2000, 20, () => [first, second, third].forEach((receiver) => receiver.drip()));
      expect([first, second, third].map((receiver) => receiver.out.lagging)).toEqual([false, false, false]);
      expect(fixture.flow.holding).toBe(true);
    });

    it('leaves a lagging reader lagging when the others only went quiet (nothing sent to them for a second)', () => {
      fixture = new Fixture(4);
      const slow = fixture.peer('slow').fill(1_000_000);
      const quiet = [fixture.peer('q1', false), fixture.peer('q2', false)];
      fixture.sender('s');
      const written = (): void => quiet.forEach((peer) => (peer.out.lastWriteAt = Date.now()));
      run(STALL + 100, 20, () => {
        slow.drip();
        written();
      });
      expect(slow.out.lagging).toBe(true);
      run(1500, 20, () => slow.drip()); // a lull: the others get nothing now
      expect(slow.out.lagging).toBe(true);
      expect(fixture.flow.holding).toBe(false);
    });

    it('charges a slow minority for all its hold, though the others go quiet while they wait for it', () => {
      fixture = new Fixture(4);
      fixture.settings.stallTimeout = 3000; // a hold budget longer than a receiver stays active without data
      const quiet = [fixture.peer('q1', false), fixture.peer('q2', false)];
      quiet.forEach((peer) => (peer.out.lastWriteAt = Date.now())); // they kept up until the hold began
      const slow = fixture.peer('slow').fill(1_000_000);
      fixture.sender('s');
      run(1500, 20, () => slow.drip()); // the senders wait: the others get nothing now
      expect(fixture.flow.holding).toBe(true);
      run(2000, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(true);
      expect(fixture.flow.holding).toBe(false);
    });

    it('lets a lagging reader hold again when the readers that kept up leave, nobody being congested then', () => {
      fixture = new Fixture(4);
      const slow = fixture.peer('slow').fill(1_000_000);
      const sender = fixture.sender('s');
      run(STALL + 100, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(true);
      fixture.members = 2; // the two that kept up are gone (the sender only sends): it is no minority now
      run(100, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(false);
      expect(fixture.flow.holding).toBe(true);
      fixture.flow.holdSender(sender);
      expect(sender.paused).toBe(true);
    });

    it('counts the readers that fell behind while a laggard was let go as slow, though they drained since', () => {
      fixture = new Fixture(3);
      const first = fixture.peer('first').fill(1_000_000);
      const others = [fixture.peer('second'), fixture.peer('third')];
      const sender = fixture.sender('s');
      run(STALL + 100, 20, () => first.drip());
      expect(first.out.lagging).toBe(true);
      for (const peer of others) peer.fill(HWM * 2); // the senders ran free: both fell behind
      run(40, 20, () => first.drip());
      expect(first.out.lagging).toBe(false);
      for (const peer of others) peer.drip(HWM * 2); // drained while senders waited: not faster than them
      run(1500, 20, () => first.drip());
      expect(first.lags).toBe(1);
      expect(fixture.flow.holding).toBe(true);
      fixture.flow.holdSender(sender);
      expect(sender.paused).toBe(true);
    });

    it("keeps a slow majority's verdict while it holds senders: its slow readers are not forgotten after 10 s", () => {
      fixture = new Fixture(3);
      const behind = fixture.peer('behind').fill(100_000_000);
      const hovering = fixture.peer('hovering').fill(HWM * 100);
      run(600, 20, () => [behind, hovering].forEach((receiver) => receiver.drip()));
      hovering.drip(HWM * 100); // a slow reader, not behind now
      run(15_000, 20, () => behind.drip());
      expect(behind.out.lagging).toBe(false);
      expect(behind.lags).toBe(0);
      expect(fixture.flow.holding).toBe(true);
    });

    it('keeps a majority when one of the readers behind dips below half the mark for a moment', () => {
      fixture = new Fixture(3);
      const hovering = fixture.peer('hovering').fill(HWM * 2);
      const slow = fixture.peer('slow').fill(1_000_000);
      run(600, 20, () => [hovering, slow].forEach((receiver) => receiver.drip()));
      hovering.drip(HWM * 2); // below half the mark: not behind now, but a slow reader behind until now
      expect(hovering.out.congested).toBe(false);
      run(STALL + 200, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(false);
      expect(slow.lags).toBe(0);
      expect(fixture.flow.holding).toBe(true);
    });

    it('leaves a slow minority lagging after the fast readers were behind a moment (a released burst)', () => {
      fixture = new Fixture(4);
      const slow = fixture.peer('slow').fill(1_000_000);
      const fast = [fixture.peer('f1'), fixture.peer('f2'), fixture.peer('f3')];
      const sender = fixture.sender('s');
      run(STALL + 100, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(true);
      // The released burst lands on the fast readers: behind for 60 ms, then drained.
      for (const peer of fast) peer.fill(HWM * 2);
      run(60, 20, () => [slow, ...fast].forEach((receiver) => receiver.drip()));
      for (const peer of fast) peer.drip(HWM * 2);
      let held = 0;
      run(12_000, 20, () => {
        slow.drip();
        fixture.flow.holdSender(sender);
        if (fixture.flow.holding) held += 20;
      });
      expect(held).toBeLessThanOrEqual(1000);
      expect(slow.lags).toBe(1);
    });

    it('leaves a lagging reader lagging while the others keep up', () => {
      fixture = new Fixture(4);
      const slow = fixture.peer('slow').fill(1_000_000);
      run(STALL + 100, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(true);
      run(2000, 20, () => slow.drip());
      expect(slow.out.lagging).toBe(true);
      expect(fixture.flow.holding).toBe(false);
    });
  });

  describe('a receiver that stops completing writes', () => {
    // Alone, nobody keeps up and nobody waits because of it: it holds senders for 2 s at most before it shows
    // it reads while behind (a slow reader's kernel wakes the writer the first time by then); not charged.
    it('stops holding senders once 2 s pass without a completion, without being cut or lagging', () => {
      fixture = new Fixture(1);
      const receiver = fixture.peer('r').fill(HWM * 5);
      const sender = fixture.sender('s');
      jest.advanceTimersByTime(2000 - 100);
      expect(fixture.flow.holding).toBe(true);
      jest.advanceTimersByTime(200);
      expect(fixture.flow.holding).toBe(false);
      expect(sender.paused).toBe(false);
      expect(receiver.lags).toBe(1); // reported, but it is still congested, not lagging
      expect(receiver.out.lagging).toBe(false);
      expect(receiver.out.congested).toBe(true);
    });

    it('takes a queue dropped for the memory budget as no relief: it shows again that it reads', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 5);
      receiver.drip(); // it read while behind: it holds senders
      expect(fixture.flow.holding).toBe(true);
      fixture.flow.cleared(receiver); // its queue went for the budget
      expect(fixture.flow.holding).toBe(false);
      expect(receiver.out.congested).toBe(false);
      expect(receiver.out.relievedAt).toBe(0); // not read its way out
      receiver.fill(HWM * 5); // behind again, the others keep up: a moment only, as one not shown to read
      expect(fixture.flow.holding).toBe(true);
      jest.advanceTimersByTime(100);
      expect(fixture.flow.holding).toBe(false);
    });

    it('holds senders again after a completion', () => {
      fixture = new Fixture(1);
      const receiver = fixture.peer('r').fill(HWM * 5);
      jest.advanceTimersByTime(2000 + 100);
      expect(fixture.flow.holding).toBe(false);
      receiver.drip();
      expect(fixture.flow.holding).toBe(true);
      const sender = fixture.sender('s');
      expect(sender.paused).toBe(true);
    });

    it('holds senders at once, as one that reads, when its kernel took more than a silent client holds', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r');
      receiver.out.writtenBytes = 32 * 1024 * 1024; // taken by its kernel in all: it reads
      receiver.fill(HWM * 5);
      run(150, 20);
      expect(fixture.flow.holding).toBe(true);
      expect(receiver.lags).toBe(0);
    });

    it('holds senders at once, as one that reads, when it read its way out of an earlier episode lately', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 2);
      run(40, 20, () => receiver.drip());
      receiver.drip(HWM * 2);
      expect(receiver.out.congested).toBe(false);
      jest.advanceTimersByTime(3000);
      receiver.fill(HWM * 5);
      run(150, 20);
      expect(fixture.flow.holding).toBe(true);
      expect(receiver.lags).toBe(0);
    });

    it('holds senders for a moment only (50 ms) when it is a minority that never read', () => {
      fixture = new Fixture(4);
      fixture.peer('r').fill(HWM * 5);
      jest.advanceTimersByTime(30);
      expect(fixture.flow.holding).toBe(true);
      jest.advanceTimersByTime(50);
      expect(fixture.flow.holding).toBe(false);
    });

    it('has a proof window that follows the gaps between its completions (twice the typical gap)', () => {
      fixture = new Fixture(1);
      const receiver = fixture.peer('r').fill(HWM * 50);
      jest.advanceTimersByTime(2100);
      expect(fixture.flow.holding).toBe(false); // past 2 s without a completion
      receiver.drip(); // a gap of 2100 ms: its kernel wakes the writer in steps
      expect(fixture.flow.holding).toBe(true);
      jest.advanceTimersByTime(3700);
      expect(fixture.flow.holding).toBe(true);
      jest.advanceTimersByTime(700);
      expect(fixture.flow.holding).toBe(false);
    });

    it('has a proof window of at most 10 s, however long the gaps', () => {
      fixture = new Fixture(1);
      const receiver = fixture.peer('r').fill(HWM * 50);
      jest.advanceTimersByTime(30_000);
      receiver.drip();
      jest.advanceTimersByTime(9_900);
      expect(fixture.flow.holding).toBe(true);
      jest.advanceTimersByTime(200);
      expect(fixture.flow.holding).toBe(false);
    });
  });

  describe('releasing held senders', () => {
    it("frames the held senders' input in turns of about 256 KiB, in the order they were held, a fan-out after each", () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 2);
      const first = fixture.sender('first', 200 * 1024);
      const second = fixture.sender('second', 200 * 1024);
      const third = fixture.sender('third', 120 * 1024);
      receiver.drip(HWM * 2);
      // This turn: all of the first (200 KiB), then one 64 KiB chunk of the second uses up the 256 KiB.
      expect(first.released).toEqual([200 * 1024]);
      expect(first.paused).toBe(false);
      expect(second.released).toEqual([CHUNK]);
      expect(second.paused).toBe(true);
      expect(third.released).toEqual([]);
      expect(third.paused).toBe(true);
      expect(fixture.fanOuts).toBe(2);
      jest.advanceTimersByTime(1); // the next turn
      expect(second.released).toEqual([CHUNK, 136 * 1024]);
      expect(third.released).toEqual([120 * 1024]);
      expect([first, second, third].map((peer) => peer.paused)).toEqual([false, false, false]);
      expect(fixture.flow.heldCount).toBe(0);
      expect(fixture.fanOuts).toBe(4);
    });

    it('stops as soon as a released sender puts a receiver behind again', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 2);
      const other = fixture.peer('other');
      const first = fixture.sender('first', 1000);
      const second = fixture.sender('second', 1000);
      fixture.onFanOut = () => {
        if (fixture.fanOuts === 1) other.fill(HWM * 2); // what the first sender sent fills another receiver
      };
      receiver.drip(HWM * 2);
      expect(first.released).toEqual([1000]);
      expect(first.paused).toBe(true); // it is held again, with the others
      expect(second.released).toEqual([]);
      expect(second.paused).toBe(true);
      other.drip(HWM * 2);
      expect(second.released).toEqual([1000]);
      expect(second.paused).toBe(false);
      expect(first.paused).toBe(false);
    });

    it('waits for the end of a fan-out in progress', () => {
      fixture = new Fixture(4);
      const receiver = fixture.peer('r').fill(HWM * 2);
      const sender = fixture.sender('s', 1000);
      fixture.flow.fanning(true);
      receiver.drip(HWM * 2);
      expect(sender.released).toEqual([]);
      expect(sender.paused).toBe(true);
      fixture.flow.fanning(false);
      expect(sender.released).toEqual([1000]);
      expect(sender.paused).toBe(false);
    });
  });

  describe('the shared minority budget', () => {
    /**
     * Runs `seconds` with one new receiver every 100 ms that never reads. It is filled past the mark as soon as
     * senders are not held (broadcasts flow only then), as a new reader is by the traffic.
     */
    function newcomers(seconds: number, onStep: (elapsed: number) => void = () => undefined): FlowPeer[] {
      const peers: FlowPeer[] = [];
      const waiting: FlowPeer[] = [];
      for (let elapsed = 0; elapsed < seconds * 1000; elapsed += 10) {
        if (elapsed % 100 === 0) {
          const peer = fixture.peer(`n${peers.length}`);
          peers.push(peer);
          waiting.push(peer);
        }
        if (!fixture.flow.holding) for (const peer of waiting.splice(0)) peer.fill(HWM * 5);
        onStep(elapsed);
        jest.advanceTimersByTime(10);
      }
      return peers;
    }

    it('lets each newcomer that never reads hold senders a moment at most', () => {
      fixture = new Fixture(1000);
      const peers = newcomers(3);
      const heldFor = peers
        .filter((peer) => peer.laggedAt !== null)
        .map((peer) => (peer.laggedAt as number) - (peer.congestedAt as number));
      expect(heldFor.length).toBeGreaterThan(5);
      for (const held of heldFor) expect(held).toBeLessThanOrEqual(80);
    });

    it('leaves a draining holder its own budget while the shared one is spent', () => {
      fixture = new Fixture(1000);
      let drainer: FlowPeer | null = null;
      newcomers(2, (elapsed) => {
        if (elapsed === 1000) drainer = fixture.peer('drainer').fill(1_000_000);
        if (drainer !== null && elapsed % 20 === 0) drainer.drip();
      });
      const peer = drainer as unknown as FlowPeer;
      expect(peer.laggedAt).not.toBeNull();
      expect((peer.laggedAt as number) - (peer.congestedAt as number)).toBeGreaterThanOrEqual(STALL - 50);
    });

    it('holds senders back at most about a twentieth of the time when a non-reading newcomer comes every 100 ms', () => {
      fixture = new Fixture(1000);
      let held = 0;
      let samples = 0;
      newcomers(20, (elapsed) => {
        if (elapsed < 5000) return; // past the first budget
        samples += 1;
        if (fixture.flow.holding) held += 1;
      });
      expect(held / samples).toBeLessThanOrEqual(0.06);
    });
  });
});
