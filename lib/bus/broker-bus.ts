import { invalidArgument, toError, withCode } from '../errors';
import type { Bus, BusListener } from './bus';

/** Where a {@link BrokerBus} is: one state, checked at the top of each public method. */
type BusState = 'new' | 'opening' | 'up' | 'down' | 'closed';

/** How often a bus whose publish failed while its clients looked live asks the broker whether it is back. */
const PROBE_INTERVAL_MS = 200;
/**
 * How long one attempt of {@link BrokerBus.reconnect} may take to connect and subscribe before it is given up
 * and tried again: a path that swallows everything accepts connections and never answers them, so an attempt
 * made during the partition must not block the first one after it heals for long.
 */
export const REDIAL_ATTEMPT_MS = 1000;

/** Pauses between attempts of {@link BrokerBus.reconnect}: 50, 100, 200, then 250 ms, plus up to 50 ms of jitter. */
function redialDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), 250) + Math.floor(Math.random() * 50);
}

/** Resolves after `ms`, unreferenced (a pending pause never keeps the process alive). */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * What RedisBus and NatsBus share: one explicit state, `up()`/`down()` reported on changes only, publish that
 * rejects (never throws) unless up, the frame limit, and an idempotent close. A subclass connects its clients,
 * says whether they are live right now ({@link live}: connected and the subscription confirmed), and calls
 * {@link refresh} on every client event that may have changed that, so the state is always recomputed from
 * the clients' own flags rather than from the order their events come in.
 */
export abstract class BrokerBus implements Bus {
  abstract readonly kind: string;
  abstract readonly maxFrameBytes: number;
  private state: BusState = 'new';
  private listener: BusListener | null = null;
  private closing: Promise<void> | null = null;
  private lastError: Error | undefined;
  /** Set when a publish failed while the clients looked live: down until a probe succeeds. */
  private suspect = false;
  private probeTimer: NodeJS.Timeout | null = null;
  /** The redial under way after {@link reconnect}: down until it has made live connections again. */
  private redialing: Promise<void> | null = null;

  constructor(readonly channel: string) {
    if (typeof channel !== 'string' || channel.length === 0) {
      throw invalidArgument(`channel must be a non-empty string, got ${String(channel)}`);
    }
  }

  /** Connects the clients and subscribes; resolves once the subscription is confirmed by the broker. */
  protected abstract connect(): Promise<void>;
  /** True when both directions work now: connected, and the subscription confirmed since the last loss. */
  protected abstract live(): boolean;
  /** Writes one frame to the publishing connection. */
  protected abstract send(frame: Buffer): Promise<void>;
  /** Asks the broker for a reply on the publishing connection (a PING, a flush). */
  protected abstract probe(): Promise<void>;
  /** Unsubscribes and disconnects whatever {@link connect} created. Must not reject. */
  protected abstract disconnect(): Promise<void>;

  /**
   * One attempt of {@link reconnect}: drops the connections at once (no goodbye: the broker may not be
   * listening) and makes new ones, resolving once they are subscribed again, within `timeout` ms; rejects
   * when that fails, and the bus tries again a little later. It must leave nothing open when it rejects
   * (the next attempt starts by dropping whatever the last one made).
   */
  protected abstract reopen(timeout: number): Promise<void>;

  /** Read through a getter: `close()` may run while `open()` awaits, which narrowing cannot see. */
  private get closed(): boolean {
    return this.state === 'closed';
  }

  /** True while `up()` was the last thing reported. */
  get isUp(): boolean {
    return this.state === 'up';
  }

  async open(listener: BusListener): Promise<void> {
    if (this.state === 'closed') throw withCode(new Error('bus closed'), 'ERR_BUS_CLOSED');
    if (this.state !== 'new') throw withCode(new Error('bus already open'), 'ERR_BUS_OPEN');
    this.state = 'opening';
    this.listener = listener;
    try {
      await this.connect();
    } catch (error) {
      const wasClosed = this.closed;
      this.state = 'closed';
      await this.disconnect();
      if (wasClosed) throw withCode(new Error('bus closed while opening'), 'ERR_BUS_CLOSED');
      throw withCode(
        new Error(`${this.kind} bus could not connect: ${toError(error).message}`, { cause: error }),
        'ERR_BUS_DOWN',
      );
    }
    if (this.closed) throw withCode(new Error('bus closed while opening'), 'ERR_BUS_CLOSED');
    this.state = 'up';
    listener.up();
    // A loss between the subscription's reply and here is reported now rather than missed.
    this.refresh();
  }

  publish(frame: Buffer): Promise<void> {
    if (this.state === 'closed' || this.state === 'new' || this.state === 'opening') {
      return Promise.reject(withCode(new Error('bus not open'), 'ERR_BUS_CLOSED'));
    }
    if (frame.length > this.maxFrameBytes) {
      return Promise.reject(
        withCode(
          new RangeError(`frame of ${frame.length} bytes over the ${this.kind} bus limit of ${this.maxFrameBytes}`),
          'ERR_BUS_FRAME_TOO_LARGE',
        ),
      );
    }
    if (this.state !== 'up') return Promise.reject(this.downError());
    let sent: Promise<void>;
    try {
      sent = this.send(frame);
    } catch (error) {
      sent = Promise.reject(toError(error));
    }
    return sent.catch((error: unknown) => {
      const failure = toError(error);
      // The clients looked live but the broker refused or the connection broke under the write: report the
      // outage now, and find out by probing when it is over.
      if (this.state === 'up') {
        this.suspect = true;
        this.lastError = failure;
        this.refresh();
      }
      throw withCode(new Error(`${this.kind} publish failed: ${failure.message}`, { cause: failure }), 'ERR_BUS_DOWN');
    });
  }

  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    const opened = this.state !== 'new';
    this.state = 'closed';
    this.listener = null;
    if (this.probeTimer !== null) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    // A redial under way stops after its current attempt, and drops what that attempt made.
    const redialing = this.redialing;
    this.closing = opened ? this.disconnect().then(() => redialing ?? undefined) : Promise.resolve();
    return this.closing;
  }

  /**
   * Drops the connections and makes new ones: reports `down()` now, and `up()` once connected and subscribed
   * again. Each attempt has {@link REDIAL_ATTEMPT_MS} to succeed; attempts go on until one does or the bus is
   * closed. For when the link's own frames stop coming back while the clients still look connected (a path
   * that swallows everything, which no client notices by itself). Does nothing unless open, nor while a
   * redial is under way.
   */
  reconnect(): void {
    if ((this.state !== 'up' && this.state !== 'down') || this.redialing !== null) return;
    this.lastError = withCode(new Error('reconnecting: the broker stopped answering'), 'ERR_BUS_DOWN');
    this.redialing = this.redial().finally(() => {
      this.redialing = null;
      this.refresh();
    });
    this.refresh();
  }

  private async redial(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt += 1) {
      try {
        await this.reopen(REDIAL_ATTEMPT_MS);
        // A publish that failed on the old connections says nothing about the new ones.
        this.suspect = false;
        break;
      } catch (error) {
        this.lastError = toError(error);
        if (!this.closed) await pause(redialDelay(attempt));
      }
    }
    if (this.closed) await this.disconnect();
  }

  /** Hands a frame from the subscription to the listener (unless closed). */
  protected deliver(frame: Buffer): void {
    if (this.state !== 'closed') this.listener?.frame(frame);
  }

  /** Re-reads {@link live} and reports `down()` or `up()` when it changed. Call it on every client event. */
  protected refresh(error?: unknown): void {
    if (error !== undefined) this.lastError = toError(error);
    const live = !this.suspect && this.redialing === null && this.live();
    if (this.state === 'up' && !live) {
      this.state = 'down';
      if (this.suspect) this.scheduleProbe();
      this.listener?.down(this.downError());
    } else if (this.state === 'down' && live) {
      this.state = 'up';
      this.lastError = undefined;
      this.listener?.up();
    }
  }

  private scheduleProbe(): void {
    if (this.probeTimer !== null || this.state === 'closed') return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      if (this.state === 'closed' || !this.suspect) return;
      if (!this.live() || this.redialing !== null) return this.scheduleProbe();
      this.probe().then(
        () => {
          this.suspect = false;
          this.refresh();
        },
        (error: unknown) => {
          this.lastError = toError(error);
          this.scheduleProbe();
        },
      );
    }, PROBE_INTERVAL_MS);
  }

  private downError(): Error {
    const cause = this.lastError;
    return withCode(
      new Error(`${this.kind} bus is down${cause ? `: ${cause.message}` : ''}`, { cause }),
      'ERR_BUS_DOWN',
    );
  }
}

/**
 * Resolves or rejects as `promise` does, or rejects with `message` after `ms`. The promise left behind is
 * caught: the caller drops what it was making.
 */
export function deadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(withCode(new Error(message), 'ERR_BUS_DOWN')), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
