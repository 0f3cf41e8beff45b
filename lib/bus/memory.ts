import { withCode } from '../errors';
import type { Bus, BusListener } from './bus';

/**
 * Joins {@link MemoryBus}es in one process: several multiplexers (in tests, or workers of one program) act
 * as one cluster without a broker. Frames are delivered asynchronously, each publisher's in order, as a
 * network would.
 */
export class MemoryHub {
  private readonly channels = new Map<string, Set<MemoryBus>>();

  /** A bus on `channel` of this hub. */
  bus(channel = 'multiplexer', maxFrameBytes = 64 * 1024 * 1024): MemoryBus {
    return new MemoryBus(this, channel, maxFrameBytes);
  }

  /** @internal */
  join(bus: MemoryBus): void {
    let members = this.channels.get(bus.channel);
    if (members === undefined) this.channels.set(bus.channel, (members = new Set()));
    members.add(bus);
  }

  /** @internal */
  part(bus: MemoryBus): void {
    const members = this.channels.get(bus.channel);
    members?.delete(bus);
    if (members?.size === 0) this.channels.delete(bus.channel);
  }

  /** @internal Every bus on the channel, the publisher included, gets its own copy. */
  carry(channel: string, frame: Buffer): void {
    const members = this.channels.get(channel);
    if (members === undefined) return;
    for (const bus of members) bus.receive(Buffer.from(frame));
  }
}

/** One node's connection to a {@link MemoryHub}. */
export class MemoryBus implements Bus {
  readonly kind = 'memory';
  private listener: BusListener | null = null;
  private closed = false;
  /** Frames on their way to this bus's listener, delivered together on the next turn. */
  private inbound: Buffer[] = [];
  private scheduled = false;

  /** Use {@link MemoryHub.bus}. */
  constructor(
    private readonly hub: MemoryHub,
    readonly channel: string,
    readonly maxFrameBytes: number,
  ) {}

  open(listener: BusListener): Promise<void> {
    if (this.closed) return Promise.reject(withCode(new Error('bus closed'), 'ERR_BUS_CLOSED'));
    if (this.listener !== null) return Promise.reject(withCode(new Error('bus already open'), 'ERR_BUS_OPEN'));
    this.listener = listener;
    this.hub.join(this);
    listener.up();
    return Promise.resolve();
  }

  publish(frame: Buffer): Promise<void> {
    if (this.closed || this.listener === null) {
      return Promise.reject(withCode(new Error('bus not open'), 'ERR_BUS_CLOSED'));
    }
    if (frame.length > this.maxFrameBytes) {
      return Promise.reject(withCode(new RangeError(`frame of ${frame.length} bytes`), 'ERR_BUS_FRAME_TOO_LARGE'));
    }
    this.hub.carry(this.channel, frame);
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.hub.part(this);
      this.inbound = [];
    }
    return Promise.resolve();
  }

  /** @internal */
  receive(frame: Buffer): void {
    this.inbound.push(frame);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const frames = this.inbound;
      this.inbound = [];
      for (const each of frames) if (!this.closed) this.listener?.frame(each);
    });
  }
}
