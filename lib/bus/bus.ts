/**
 * The seam between nodes: a bus carries opaque frames between the multiplexers of a cluster, on one channel.
 *
 * A bus only moves bytes. What a frame holds (the origin node and its incarnation, sequence numbers, the
 * messages of one event-loop turn and their targets) is the link's business (`link.ts`): it drops its own
 * frames and repeats, counts gaps as losses, and keeps a bounded outbox while the bus is down. So an
 * implementation needs no knowledge of messages, and every implementation runs the same contract suite.
 */
export interface Bus {
  /** What carries the frames, for logs: `'memory'`, `'redis'`, `'nats'`. */
  readonly kind: string;
  /** The channel (Redis channel, NATS subject): buses on different channels never hear each other. */
  readonly channel: string;
  /** The largest frame, in bytes, this bus can carry; the link never publishes a larger one. */
  readonly maxFrameBytes: number;
  /**
   * Connects and subscribes to the channel. From then on `listener.frame` gets every frame published on
   * the channel by every node, in the order each publisher published them (its own frames may come back too).
   * Resolves once subscribed; rejects when the first connection fails. Call it once.
   */
  open(listener: BusListener): Promise<void>;
  /**
   * Hands one frame to the broker. Resolves once it is on its way (written to a live connection); rejects,
   * never throws, when it cannot be sent now (not connected, closed). The link resends what was rejected
   * after the next `up()`; receivers drop repeats, so a frame that went through anyway is not duplicated.
   */
  publish(frame: Buffer): Promise<void>;
  /** Unsubscribes and disconnects. Idempotent; `publish` rejects afterwards. */
  close(): Promise<void>;
  /**
   * Optional: drops the connections and makes new ones (reporting `down()`, then `up()` once subscribed
   * again). The link asks for it when its own frames stop coming back while the client still looks connected
   * (a path that swallows everything, which no client notices by itself).
   */
  reconnect?(): void;
}

/** What a bus reports to its link. Calls to it must not throw into the bus, and never do. */
export interface BusListener {
  /** A frame published on the channel. The Buffer is the link's to keep. */
  frame(frame: Buffer): void;
  /** Connected and subscribed: once at `open()`, and again after every outage. */
  up(): void;
  /** The connection or the subscription was lost. Frames published by others meanwhile may be lost. */
  down(error?: Error): void;
}
