/**
 * The contract every {@link Bus} keeps, as an exported suite that each implementation runs against its own
 * carrier (mqemitter's abstractTest is the model): `describeBusContract('RedisBus', start)`.
 */
import { randomBytes } from 'node:crypto';
import type { Bus, BusListener } from '../../lib';
import { delay, onTeardown, waitFor } from '../helpers/net';

/** What an implementation gives the contract: buses on a running carrier. */
export interface BusCarrier {
  /** A new bus, not yet opened, on `channel`. */
  bus(channel: string): Bus;
  /** Stops whatever the carrier started (brokers, hubs). */
  stop(): Promise<void>;
}

/** Records everything a bus reports. */
export class BusRecorder implements BusListener {
  readonly frames: Buffer[] = [];
  ups = 0;
  readonly downs: Array<Error | undefined> = [];

  frame(frame: Buffer): void {
    this.frames.push(frame);
  }

  up(): void {
    this.ups += 1;
  }

  down(error?: Error): void {
    this.downs.push(error);
  }

  /** True while the last report was up() (or nothing but the opening up()). */
  get isUp(): boolean {
    return this.ups > this.downs.length;
  }

  /** Frames that begin with `tag`, with the tag removed. */
  tagged(tag: string): Buffer[] {
    const prefix = Buffer.from(tag);
    return this.frames
      .filter((frame) => frame.subarray(0, prefix.length).equals(prefix))
      .map((f) => f.subarray(prefix.length));
  }
}

/** A unique channel name for one test. */
export function uniqueChannel(prefix = 'contract'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Opens a bus with a recorder, closed after the test. */
export async function openBus(bus: Bus): Promise<BusRecorder> {
  const recorder = new BusRecorder();
  onTeardown(() => bus.close());
  await bus.open(recorder);
  return recorder;
}

/**
 * Waits until every bus has heard a probe from every other one: each bus's subscription is confirmed at its
 * own broker on open(), but in a broker cluster the interest may still be on its way to the other servers.
 * Forgets the probes afterwards.
 */
export async function settle(
  buses: readonly Bus[],
  recorders: readonly BusRecorder[],
  timeout = 10_000,
): Promise<void> {
  const start = Date.now();
  const heard = (receiver: number, sender: number): boolean =>
    recorders[receiver].tagged(`probe:${sender}:`).length > 0;
  const everyone = (): boolean =>
    buses.every((_, receiver) => buses.every((__, sender) => sender === receiver || heard(receiver, sender)));
  while (!everyone()) {
    if (Date.now() - start > timeout) throw new Error('buses did not hear each other');
    await Promise.all(buses.map((bus, i) => bus.publish(Buffer.from(`probe:${i}:`))));
    await delay(50);
  }
  for (const recorder of recorders) {
    const kept = recorder.frames.filter((frame) => !frame.subarray(0, 6).equals(Buffer.from('probe:')));
    recorder.frames.length = 0;
    recorder.frames.push(...kept);
  }
}

/** A frame naming its publisher and sequence number, then `body`. */
function numbered(publisher: number, seq: number, body: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.write('F', 0);
  header.writeUInt8(publisher, 1);
  header.writeUInt32BE(seq, 2);
  header.writeUInt16BE(body.length & 0xffff, 6);
  return Buffer.concat([header, body]);
}

/** Frames the record holds from `publisher`, as [seq, body] in arrival order. */
function fromPublisher(recorder: BusRecorder, publisher: number): Array<[number, Buffer]> {
  return recorder.frames
    .filter((frame) => frame.length >= 8 && frame[0] === 0x46 && frame[1] === publisher)
    .map((frame) => [frame.readUInt32BE(2), frame.subarray(8)]);
}

/** Byte strings that break text protocols: every byte value, CRLF, RESP and NATS look-alikes, bad UTF-8. */
const AWKWARD = [
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.from('\r\n\r\n'),
  Buffer.from('*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$3\r\nabc\r\n'),
  Buffer.from('MSG x 1 5\r\nhello\r\nPUB y 0\r\n\r\n'),
  Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x00]),
  Buffer.from([0x00]),
];

/**
 * Runs the bus contract against the carrier that `start` starts (once for the suite; `stop` after it).
 * @param largeFrameBytes the size of the large-frame test, capped by the bus's maxFrameBytes
 */
export function describeBusContract(
  name: string,
  start: () => Promise<BusCarrier>,
  { largeFrameBytes = 8 * 1024 * 1024, timeout = 20_000 } = {},
): void {
  describe(`${name} (bus contract)`, () => {
    let carrier: BusCarrier;

    beforeAll(async () => {
      carrier = await start();
    }, 60_000);

    afterAll(async () => {
      await carrier?.stop();
    }, 30_000);

    /** `count` buses on `channel`, opened, with their recorders, hearing each other. */
    async function cluster(count: number, channel = uniqueChannel()) {
      const buses = Array.from({ length: count }, () => carrier.bus(channel));
      const recorders = await Promise.all(buses.map((bus) => openBus(bus)));
      await settle(buses, recorders);
      return { buses, recorders, channel };
    }

    it(
      'calls up() once when open() resolves, and never down() while the carrier is healthy',
      async () => {
        const { buses, recorders } = await cluster(2);
        await Promise.all(buses.map((bus) => bus.publish(Buffer.from('F\x00hello'))));
        await waitFor(() => recorders.every((r) => r.frames.length > 0), 'frames');
        for (const recorder of recorders) {
          expect(recorder.ups).toBe(1);
          expect(recorder.downs).toEqual([]);
        }
      },
      timeout,
    );

    it(
      "carries every frame to every other bus on the channel, each publisher's in order",
      async () => {
        const count = 3;
        const perPublisher = 300;
        const { buses, recorders } = await cluster(count);
        const sent: Buffer[][] = buses.map(() => []);
        const publishes: Array<Promise<void>> = [];
        for (let seq = 0; seq < perPublisher; seq++) {
          buses.forEach((bus, publisher) => {
            const body = randomBytes(1 + ((seq * 37 + publisher * 101) % 3000));
            sent[publisher].push(body);
            publishes.push(bus.publish(numbered(publisher, seq, body)));
          });
        }
        await Promise.all(publishes);
        for (let receiver = 0; receiver < count; receiver++) {
          for (let publisher = 0; publisher < count; publisher++) {
            if (publisher === receiver) continue;
            await waitFor(
              () => fromPublisher(recorders[receiver], publisher).length >= perPublisher,
              `bus ${receiver} to get ${perPublisher} frames from bus ${publisher}`,
              timeout / 2,
            );
            const got = fromPublisher(recorders[receiver], publisher);
            expect(got.map(([seq]) => seq)).toEqual(Array.from({ length: perPublisher }, (_, i) => i));
            got.forEach(([, body], seq) => expect(body.equals(sent[publisher][seq])).toBe(true));
          }
        }
      },
      timeout,
    );

    it(
      'is binary-safe: every byte value, CRLF and protocol look-alikes arrive as sent',
      async () => {
        const { buses, recorders } = await cluster(2);
        for (const [i, body] of AWKWARD.entries()) await buses[0].publish(numbered(0, i, body));
        await waitFor(() => fromPublisher(recorders[1], 0).length >= AWKWARD.length, 'awkward frames');
        expect(fromPublisher(recorders[1], 0).map(([, body]) => body.toString('hex'))).toEqual(
          AWKWARD.map((body) => body.toString('hex')),
        );
      },
      timeout,
    );

    it(
      'carries a large frame whole (its maxFrameBytes, up to 8 MiB)',
      async () => {
        const { buses, recorders } = await cluster(2);
        const size = Math.min(buses[0].maxFrameBytes, largeFrameBytes);
        const frame = randomBytes(size);
        frame[0] = 0x4c; // 'L', so that no other test's filter takes it for a numbered frame
        await buses[0].publish(frame);
        await waitFor(
          () => recorders[1].frames.some((f) => f.length === size),
          `a frame of ${size} bytes`,
          timeout / 2,
        );
        expect(recorders[1].frames.find((f) => f.length === size)!.equals(frame)).toBe(true);
      },
      timeout,
    );

    it(
      'keeps channels apart: x and x-2 never hear each other',
      async () => {
        const base = uniqueChannel();
        const x = await cluster(2, base);
        const x2 = await cluster(2, `${base}-2`);
        await x.buses[0].publish(numbered(0, 0, Buffer.from('on x')));
        await x2.buses[0].publish(numbered(0, 0, Buffer.from('on x-2')));
        await waitFor(() => fromPublisher(x.recorders[1], 0).length === 1, 'the frame on x');
        await waitFor(() => fromPublisher(x2.recorders[1], 0).length === 1, 'the frame on x-2');
        // Both frames crossed their own channel; give a stray copy time to cross the other one too.
        await delay(200);
        const bodies = (recorder: BusRecorder): string[] =>
          fromPublisher(recorder, 0).map(([, body]) => body.toString());
        // A bus may hear its own frames; never the other channel's.
        for (const recorder of x.recorders) expect(bodies(recorder).filter((body) => body !== 'on x')).toEqual([]);
        for (const recorder of x2.recorders) expect(bodies(recorder).filter((body) => body !== 'on x-2')).toEqual([]);
      },
      timeout,
    );

    it(
      'rejects publish before open() and after close(), without throwing',
      async () => {
        const bus = carrier.bus(uniqueChannel());
        onTeardown(() => bus.close());
        const before = bus.publish(Buffer.from('early'));
        expect(before).toBeInstanceOf(Promise);
        await expect(before).rejects.toMatchObject({ code: 'ERR_BUS_CLOSED' });
        await bus.open(new BusRecorder());
        await bus.close();
        await expect(bus.publish(Buffer.from('late'))).rejects.toMatchObject({ code: 'ERR_BUS_CLOSED' });
      },
      timeout,
    );

    it(
      'closes idempotently, also when never opened',
      async () => {
        const never = carrier.bus(uniqueChannel());
        await never.close();
        await never.close();
        const bus = carrier.bus(uniqueChannel());
        await bus.open(new BusRecorder());
        await Promise.all([bus.close(), bus.close()]);
        await bus.close();
        await expect(bus.open(new BusRecorder())).rejects.toMatchObject({ code: 'ERR_BUS_CLOSED' });
      },
      timeout,
    );

    it(
      'refuses a second open()',
      async () => {
        const bus = carrier.bus(uniqueChannel());
        await openBus(bus);
        await expect(bus.open(new BusRecorder())).rejects.toMatchObject({ code: 'ERR_BUS_OPEN' });
      },
      timeout,
    );

    it(
      'delivers nothing to a bus after its close()',
      async () => {
        const { buses, recorders } = await cluster(3);
        await buses[2].close();
        const before = recorders[2].frames.length;
        await buses[0].publish(numbered(0, 0, Buffer.from('after close')));
        await waitFor(() => fromPublisher(recorders[1], 0).length === 1, 'the frame at the open bus');
        await delay(50);
        expect(recorders[2].frames.length).toBe(before);
      },
      timeout,
    );

    it(
      'rejects a frame larger than maxFrameBytes, and stays up',
      async () => {
        const { buses, recorders } = await cluster(2);
        const limit = buses[0].maxFrameBytes;
        expect(Number.isSafeInteger(limit) && limit > 0).toBe(true);
        const tooLarge = Buffer.allocUnsafe(limit + 1);
        let thrown: unknown = null;
        let result: Promise<void> | undefined;
        try {
          result = buses[0].publish(tooLarge);
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeNull();
        await expect(result).rejects.toMatchObject({ code: 'ERR_BUS_FRAME_TOO_LARGE' });
        await buses[0].publish(numbered(0, 0, Buffer.from('still fine')));
        await waitFor(() => fromPublisher(recorders[1], 0).length === 1, 'the next frame');
        expect(recorders[0].downs).toEqual([]);
      },
      timeout,
    );
  });
}
