import { MemoryHub, Multiplexer, type Bus, type BusListener } from '../../lib';
import { decodeFrame, EnvelopeKind, FrameKind, NodeSequence, type Frame } from '../../lib/bus/envelope';
import { connectAll, delay, onTeardown, waitFor, type TestClient } from '../helpers/net';

/** A small seeded PRNG (mulberry32): the same seed gives the same run, so a failure can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max]. */
function between(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** Runs `property` with `runs` seeds from `base` on; a failure names its seed (set SEED=... to replay one). */
function forSeeds(runs: number, base: number, property: (seed: number) => void): void {
  const only = process.env.SEED;
  const seeds = only !== undefined ? [Number(only)] : Array.from({ length: runs }, (_, i) => base + i);
  for (const seed of seeds) {
    try {
      property(seed);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`property failed with SEED=${seed}: ${message}`);
    }
  }
}

/** A frame as the network carries it: one incarnation's messages numbered from `first`. */
interface SentFrame {
  readonly incarnation: number;
  readonly first: number;
  readonly count: number;
}

/** What a faulty network does to one node's frames on their way to one receiver. */
interface Faults {
  readonly drop: number;
  readonly duplicate: number;
  /** Frames held back at most, and reordered among themselves. */
  readonly window: number;
  readonly restart: number;
  readonly heartbeat: number;
}

/**
 * One node's frames (random sizes, heartbeats, restarts with numbering from 0 again) as one receiver gets them:
 * dropped, repeated, and reordered within a window, also across a restart. Online, because of the one thing a
 * receiver cannot tell: frames of an incarnation it never heard, arriving after a newer one, look like a newer
 * restart (incarnations carry no order), so old frames still on their way when the node restarts are dropped
 * here when the receiver has heard nothing of their incarnation.
 */
function* faultyStream(
  random: () => number,
  frames: number,
  faults: Faults,
  heard: (incarnation: number) => boolean,
): Generator<SentFrame> {
  let incarnation = 0;
  let seq = 0;
  const held: SentFrame[] = [];
  const take = (): SentFrame => held.splice(between(random, 0, held.length - 1), 1)[0];
  for (let i = 0; i < frames; i += 1) {
    if (random() < faults.restart) {
      const old = incarnation;
      if (!heard(old)) for (let h = held.length - 1; h >= 0; h -= 1) if (held[h].incarnation === old) held.splice(h, 1);
      incarnation += 1;
      seq = 0;
    }
    const count = random() < faults.heartbeat ? 0 : between(random, 1, 6);
    const frame = { incarnation, first: seq, count };
    seq += count;
    if (random() < faults.drop) continue;
    held.push(frame);
    while (random() < faults.duplicate) held.push(frame);
    while (held.length > faults.window) yield take();
  }
  while (held.length > 0) yield take();
}

/**
 * What the receiver should know after each frame: per incarnation, every message before the start of the
 * latest frame that arrived is either delivered or counted as lost. The first incarnation heard counts from
 * the first frame heard (before it, the receiver was not listening, as far as it can tell); a later
 * incarnation counts from 0 (a restart numbers from 0 again). An incarnation replaced by a newer one counts up
 * to the frames that arrived before the replacement: frames of it arriving later are late.
 */
class Oracle {
  private readonly base = new Map<number, number>();
  private readonly reach = new Map<number, number>();
  private readonly delivered = new Map<number, Set<number>>();
  private current: number | null = null;
  private readonly retired = new Set<number>();

  heard(incarnation: number): boolean {
    return this.base.has(incarnation);
  }

  arrived(frame: SentFrame): void {
    if (this.retired.has(frame.incarnation)) return;
    if (frame.incarnation !== this.current) {
      if (this.current !== null) this.retired.add(this.current);
      this.base.set(frame.incarnation, this.current === null ? frame.first : 0);
      this.reach.set(frame.incarnation, frame.first);
      this.delivered.set(frame.incarnation, new Set());
      this.current = frame.incarnation;
    }
    this.reach.set(frame.incarnation, Math.max(this.reach.get(frame.incarnation) ?? 0, frame.first));
  }

  deliver(incarnation: number, seq: number): void {
    this.delivered.get(incarnation)?.add(seq);
  }

  /** Messages sent before the reach of each incarnation and not delivered. */
  missing(): number {
    let missing = 0;
    for (const [incarnation, base] of this.base) {
      const reach = this.reach.get(incarnation) ?? base;
      let delivered = 0;
      for (const seq of this.delivered.get(incarnation) ?? []) if (seq >= base && seq < reach) delivered += 1;
      missing += Math.max(0, reach - base) - delivered;
    }
    return missing;
  }
}

describe('NodeSequence under duplicates, reorders, drops and restarts', () => {
  const profiles: Array<[string, Faults]> = [
    ['drops only', { drop: 0.2, duplicate: 0, window: 0, restart: 0, heartbeat: 0.1 }],
    ['duplicates only', { drop: 0, duplicate: 0.3, window: 0, restart: 0, heartbeat: 0.1 }],
    ['reorders only', { drop: 0, duplicate: 0, window: 4, restart: 0, heartbeat: 0.1 }],
    ['drops, duplicates and reorders', { drop: 0.15, duplicate: 0.2, window: 3, restart: 0, heartbeat: 0.15 }],
    ['all of it, with restarts', { drop: 0.15, duplicate: 0.2, window: 3, restart: 0.03, heartbeat: 0.15 }],
    ['restarts in a clean network', { drop: 0, duplicate: 0, window: 0, restart: 0.05, heartbeat: 0.1 }],
  ];

  it.each(profiles)(
    'delivers each message at most once, in order, and counts exactly the missing ones as lost (%s)',
    (_name, faults) => {
      forSeeds(300, 1000, (seed) => {
        const random = prng(seed);
        const sequence = new NodeSequence();
        const oracle = new Oracle();
        let lost = 0;
        let last: [number, number] | null = null;
        const seen = new Set<string>();
        let index = 0;
        for (const frame of faultyStream(random, between(random, 1, 200), faults, (i) => oracle.heard(i))) {
          index += 1;
          oracle.arrived(frame);
          const verdict = sequence.accept(`inc${frame.incarnation}`, frame.first, frame.count);
          lost += verdict.lost;
          for (let seq = frame.first + verdict.skip; seq < frame.first + frame.count; seq += 1) {
            const at = `frame ${index} (incarnation ${frame.incarnation}, first ${frame.first}, count ${frame.count})`;
            const key = `${frame.incarnation}:${seq}`;
            if (seen.has(key)) throw new Error(`${at}: message ${key} delivered twice`);
            seen.add(key);
            if (last !== null && (frame.incarnation < last[0] || (frame.incarnation === last[0] && seq <= last[1]))) {
              throw new Error(`${at}: message ${key} delivered after ${last[0]}:${last[1]}`);
            }
            last = [frame.incarnation, seq];
            oracle.deliver(frame.incarnation, seq);
          }
          if (lost !== oracle.missing()) {
            throw new Error(
              `after frame ${index} (incarnation ${frame.incarnation}, first ${frame.first}, count ${frame.count}): ` +
                `lost ${lost}, missing ${oracle.missing()}`,
            );
          }
        }
      });
    },
  );

  it('ignores frames of an incarnation it has moved past, however late', () => {
    const sequence = new NodeSequence();
    expect(sequence.accept('a', 0, 3)).toEqual({ skip: 0, lost: 0, restarted: false });
    expect(sequence.accept('b', 0, 2)).toEqual({ skip: 0, lost: 0, restarted: true });
    expect(sequence.accept('a', 3, 2)).toEqual({ skip: 2, lost: 0, restarted: false });
    expect(sequence.accept('b', 0, 2)).toEqual({ skip: 2, lost: 0, restarted: false });
    expect(sequence.accept('b', 2, 1)).toEqual({ skip: 0, lost: 0, restarted: false });
  });

  it('counts the first messages of a new incarnation as lost when its first frames are', () => {
    const sequence = new NodeSequence();
    expect(sequence.accept('a', 5, 3)).toEqual({ skip: 0, lost: 0, restarted: false }); // first heard mid-stream
    expect(sequence.accept('b', 4, 1)).toEqual({ skip: 0, lost: 4, restarted: true }); // a restart numbers from 0
  });
});

/** What one receiving node should have of one other node, worked out from the frames it was given. */
interface Account {
  incarnation: string;
  /** Sequence number of the first frame given (the receiver counts from there). */
  base: number;
  /** End of the numbering given so far: every message before it was either delivered or is missing. */
  reach: number;
  /** End of the numbering published by the node so far (seen before the faults). */
  published: number;
  /** Envelopes delivered: a frame is delivered past `reach` only (a frame behind it is late, or a repeat). */
  delivered: number;
  /** The text of each message envelope delivered, in order. */
  readonly messages: string[];
}

/** Faults applied to the frames a node receives from the other nodes (its own come back untouched). */
interface LinkFaults {
  readonly drop: number;
  readonly duplicate: number;
  readonly window: number;
}

/**
 * A bus in front of a {@link MemoryBus} that drops, repeats and reorders (within a window) the frames of the
 * other nodes on their way to this node's link, and keeps the account of what the link was given.
 */
class FaultyBus implements Bus {
  readonly kind = 'faulty';
  faults: LinkFaults | null = null;
  readonly accounts = new Map<string, Account>();
  private listener: BusListener | null = null;
  private held: Array<{ bytes: Buffer; frame: Frame }> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly inner: Bus,
    private readonly node: string,
    private readonly random: () => number,
  ) {}

  get channel(): string {
    return this.inner.channel;
  }

  get maxFrameBytes(): number {
    return this.inner.maxFrameBytes;
  }

  open(listener: BusListener): Promise<void> {
    this.listener = listener;
    return this.inner.open({
      frame: (bytes) => this.arrive(bytes),
      up: () => listener.up(),
      down: (error) => listener.down(error),
    });
  }

  publish(frame: Buffer): Promise<void> {
    return this.inner.publish(frame);
  }

  close(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.held = [];
    return this.inner.close();
  }

  /** Stops the faults: what is held goes on, in a random order, and everything later as it comes. */
  heal(): void {
    this.faults = null;
    this.release(0);
  }

  private arrive(bytes: Buffer): void {
    const frame = decodeFrame(bytes);
    if (frame.node === this.node) {
      this.listener?.frame(bytes);
      return;
    }
    const end = frame.first + (frame.kind === FrameKind.Messages ? frame.envelopes.length : 0);
    const account = this.accounts.get(frame.node);
    if (account !== undefined) account.published = Math.max(account.published, end);
    const faults = this.faults;
    if (faults === null) {
      this.give(bytes, frame);
      return;
    }
    if (this.random() < faults.drop) return;
    this.held.push({ bytes, frame });
    while (this.random() < faults.duplicate) this.held.push({ bytes: Buffer.from(bytes), frame });
    this.release(faults.window);
    if (this.held.length > 0 && this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.release(0);
      }, 2);
    }
  }

  /** Gives the link held frames, picked at random, until at most `keep` are held. */
  private release(keep: number): void {
    while (this.held.length > keep) {
      const [{ bytes, frame }] = this.held.splice(Math.floor(this.random() * this.held.length), 1);
      this.give(bytes, frame);
    }
  }

  private give(bytes: Buffer, frame: Frame): void {
    const count = frame.kind === FrameKind.Messages ? frame.envelopes.length : 0;
    let account = this.accounts.get(frame.node);
    if (account === undefined || account.incarnation !== frame.incarnation) {
      if (account !== undefined) throw new Error(`node ${frame.node} restarted: not expected here`);
      account = {
        incarnation: frame.incarnation,
        base: frame.first,
        reach: frame.first,
        published: frame.first + count,
        delivered: 0,
        messages: [],
      };
      this.accounts.set(frame.node, account);
    }
    for (let i = Math.max(0, account.reach - frame.first); i < count; i += 1) {
      account.delivered += 1;
      const envelope = frame.envelopes[i];
      if (envelope.kind === EnvelopeKind.Message) account.messages.push(envelope.message.toString().replace(/\n$/, ''));
    }
    account.reach = Math.max(account.reach, frame.first + count);
    this.listener?.frame(bytes);
  }
}

/** One node of the cluster under test. */
interface TestNode {
  readonly name: string;
  readonly mux: Multiplexer;
  readonly bus: FaultyBus;
  readonly receiver: TestClient;
  /** Losses reported by 'loss' events, per node. */
  readonly losses: Map<string, number>;
  readonly sent: string[];
}

/** Lines received by a client from `node` (lines start with the node's name). */
function linesFrom(client: TestClient, node: string): string[] {
  return client.text.split('\n').filter((line) => line.startsWith(`${node} `));
}

/** Fails with the first line that differs (the lines are long and many). */
function expectSameLines(what: string, got: readonly string[], expected: readonly string[]): void {
  const short = (line: string | undefined): string => (line === undefined ? 'nothing' : line.split(' ', 2).join(' '));
  for (let i = 0; i < Math.max(got.length, expected.length); i += 1) {
    if (got[i] !== expected[i]) {
      throw new Error(
        `${what}: line ${i} is ${short(got[i])}, expected ${short(expected[i])} (${got.length} lines, expected ${expected.length})`,
      );
    }
  }
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('multiplexers joined by an in-memory bus that drops, repeats and reorders frames', () => {
  const seeds = process.env.SEED !== undefined ? [Number(process.env.SEED)] : [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

  it.each(seeds)(
    "give every receiver each node's messages once and in order, and report exactly the missing ones (SEED=%i)",
    async (seed) => {
      const random = prng(seed);
      const hub = new MemoryHub();
      const nodes: TestNode[] = [];
      for (let i = 0; i < 3; i += 1) {
        const name = `n${i}`;
        const bus = new FaultyBus(hub.bus(), name, random);
        const mux = new Multiplexer({
          debugLevel: 'critical',
          node: name,
          bus,
          heartbeatInterval: 50,
          nodeTimeout: 60_000,
        });
        const losses = new Map<string, number>();
        mux.on('loss', (node, count) => losses.set(node, (losses.get(node) ?? 0) + count));
        const { port } = await mux.listen({ port: 0, host: '127.0.0.1' });
        onTeardown(() => mux.destroy({ timeout: 200 }));
        const [receiver] = await connectAll(mux, port, 1);
        nodes.push({ name, mux, bus, receiver, losses, sent: [] });
      }
      const peers = (node: TestNode): TestNode[] => nodes.filter((other) => other !== node);
      // Every node hears every other before the faults start: from then on, each counts from what it heard.
      await waitFor(
        () => nodes.every((node) => peers(node).every((other) => node.bus.accounts.has(other.name))),
        'every node to hear every other',
        10_000,
      );
      for (const node of nodes) {
        node.bus.faults = {
          drop: 0.1 + random() * 0.2,
          duplicate: random() * 0.3,
          window: 1 + Math.floor(random() * 4),
        };
      }
      // Turns of 1 to 8 messages of 0 to 300 bytes of padding from random nodes: one frame per node and turn.
      const counters = nodes.map(() => 0);
      for (let t = 0; t < 300; t += 1) {
        for (const [index, node] of nodes.entries()) {
          if (random() < 0.4) continue;
          const messages = 1 + Math.floor(random() * 8);
          for (let m = 0; m < messages; m += 1) {
            const line = `${node.name} ${counters[index]} ${'x'.repeat(Math.floor(random() * 300))}`;
            counters[index] += 1;
            node.sent.push(line);
            node.mux.sendToAll(`${line}\n`);
          }
        }
        await (random() < 0.1 ? delay(1 + Math.floor(random() * 5)) : turn());
      }
      for (const node of nodes) node.bus.heal();
      // Heartbeats carry the next sequence number: once each node has been given every other's numbering up to
      // what that one published, every gap is known.
      await waitFor(
        () =>
          nodes.every((node) =>
            peers(node).every((other) => {
              const account = node.bus.accounts.get(other.name);
              return account !== undefined && account.reach === account.published;
            }),
          ),
        'every numbering to be given in full',
        20_000,
      );
      for (const node of nodes) {
        const expected = nodes.map((other) =>
          other === node ? other.sent : (node.bus.accounts.get(other.name)?.messages ?? []),
        );
        const total = expected.reduce((sum, lines) => sum + lines.length, 0);
        await waitFor(
          () => node.receiver.text.split('\n').length - 1 >= total,
          `${total} lines at the receiver of ${node.name}`,
          20_000,
        );
        await delay(20);
        let lost = 0;
        for (const [index, other] of nodes.entries()) {
          const got = linesFrom(node.receiver, other.name);
          // In order and once: the numbers a receiver got from a node only go up.
          const numbers = got.map((line) => Number(line.split(' ')[1]));
          for (let i = 1; i < numbers.length; i += 1) {
            if (numbers[i] <= numbers[i - 1]) {
              throw new Error(`${node.name} got ${other.name} ${numbers[i]} after ${other.name} ${numbers[i - 1]}`);
            }
          }
          expectSameLines(`${node.name} from ${other.name}`, got, expected[index]);
          if (other === node) continue;
          const account = node.bus.accounts.get(other.name);
          if (account === undefined) throw new Error(`${node.name} never heard ${other.name}`);
          const missing = account.published - account.base - account.delivered;
          expect([node.name, other.name, node.losses.get(other.name) ?? 0]).toEqual([node.name, other.name, missing]);
          // Every message the sender sent and the receiver did not get is among the missing envelopes.
          expect(other.sent.length - got.length).toBeLessThanOrEqual(missing);
          lost += missing;
        }
        const stats = node.mux.stats().bus;
        expect(stats?.lost).toBe(lost);
      }
      // The faults did happen: something was lost somewhere.
      expect(nodes.some((node) => (node.mux.stats().bus?.lost ?? 0) > 0)).toBe(true);
    },
    60_000,
  );
});
