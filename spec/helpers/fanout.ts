import { Outbound, type OutboundOwner } from '../../lib/fanout/outbound';
import type { MemoryAccount } from '../../lib/fanout/slab';
import type { Receiver } from '../../lib/fanout/turn-log';
import { DEFAULTS, type Settings } from '../../lib/options';
import type { Codec } from '../../lib/transport/connection';
import { completionOwner, MemoryConnection } from './memory-connection';

/** The default settings with some changed. */
export function settingsWith(changes: Partial<Settings> = {}): Settings {
  return { ...DEFAULTS, ...changes };
}

/** A {@link MemoryAccount} that keeps the balance and every call. */
export class RecordingAccount implements MemoryAccount {
  bytes = 0;
  readonly holds: number[] = [];
  readonly releases: number[] = [];

  hold(bytes: number): void {
    this.holds.push(bytes);
    this.bytes += bytes;
  }

  release(bytes: number): void {
    this.releases.push(bytes);
    this.bytes -= bytes;
    if (this.bytes < 0) throw new Error(`account released below zero (${this.bytes})`);
  }
}

/**
 * The owner of one real {@link Outbound} over a {@link MemoryConnection}: it records every callback by name
 * (`overflowed:N` with its count) and, like the flow control, sets `congested` when told and clears it once
 * relieved, so each callback fires at its moment and not at every write. Completions reach `out.onWritten`.
 */
export class OutboundPeer implements OutboundOwner {
  readonly out: Outbound;
  readonly events: string[] = [];
  /** What `wrote` counted. */
  readonly counted = { bytes: 0, messages: 0 };

  constructor(
    readonly connection: MemoryConnection = new MemoryConnection(),
    readonly settings: Settings = settingsWith(),
    readonly account: RecordingAccount = new RecordingAccount(),
  ) {
    this.out = new Outbound(connection, this);
    connection.owner = completionOwner(() => this.out.onWritten(Date.now()));
  }

  congested(): void {
    this.events.push('congested');
    this.out.congested = true;
  }

  relieved(): void {
    this.events.push('relieved');
    this.out.congested = false;
    this.out.lagging = false;
  }

  backlogged(): void {
    this.events.push('backlogged');
  }

  progressed(): void {
    this.events.push('progressed');
  }

  overflowed(dropped: number): void {
    this.events.push(`overflowed:${dropped}`);
  }

  wrote(bytes: number, messages: number): void {
    this.counted.bytes += bytes;
    this.counted.messages += messages;
  }

  flushed(): void {
    this.events.push('flushed');
  }

  /** The events recorded since the last call. */
  take(): string[] {
    return this.events.splice(0);
  }
}

/** A receiver of the turn log: a real Outbound over a memory connection, with rooms and a name. */
export class FakeReceiver extends OutboundPeer implements Receiver {
  rooms: Set<string> | null = null;
  taking = false;
  afterShares = 0;
  flushes = 0;

  constructor(
    readonly name: string,
    codec: Codec = 'stream',
    settings?: Settings,
    account?: RecordingAccount,
  ) {
    super(new MemoryConnection(codec), settings, account);
  }

  get codec(): Codec {
    return this.connection.codec;
  }

  encode(message: Buffer): Buffer {
    return this.connection.encode(message, false);
  }

  afterShare(): void {
    this.afterShares += 1;
  }

  readonly scheduleFlush = (): void => {
    this.flushes += 1;
  };

  /** Puts it in rooms (the turn log only reads the set; the room index is kept by the test). */
  inRooms(...rooms: string[]): this {
    this.rooms = new Set(rooms);
    return this;
  }

  override toString(): string {
    return this.name;
  }
}
