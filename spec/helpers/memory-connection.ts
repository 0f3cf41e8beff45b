import type { Codec, Connection, ConnectionOwner, TransportKind } from '../../lib/transport/connection';
import { frame, OPCODE_BINARY, OPCODE_TEXT } from '../../lib/framing/websocket';
import type { DenyReason, ExitReason } from '../../lib/types';

/**
 * A {@link Connection} held in memory, for unit tests below the socket level: it records every write (the
 * views as given, in order), and the test decides what the "kernel" does with them. By default the kernel
 * takes every write at once (`pending` stays 0); with {@link stall} it takes nothing, so every write adds to
 * `pending` until {@link complete} takes bytes and fires the write completion (`owner.onWritten`).
 */
export class MemoryConnection implements Connection {
  readonly kind: TransportKind;
  readonly socket = null;
  readonly request = null;
  readonly address: string;
  readonly port = 4321;
  owner: ConnectionOwner | null = null;
  /** Bytes written that the kernel has not taken; tests may set it directly. */
  pending = 0;
  writable = true;
  /** Every write, as the list of views handed over (the list is copied; the views are the very Buffers). */
  readonly writes: Buffer[][] = [];
  /** True while reading is paused. */
  paused = false;
  pauses = 0;
  resumes = 0;
  ended: ExitReason | null = null;
  destroyed = false;
  refused: DenyReason | null = null;
  idleTimeout = 0;
  /** False: the kernel takes nothing, every write stays pending until {@link complete}. */
  private takesAll = true;

  constructor(
    readonly codec: Codec = 'stream',
    address = '127.0.0.1',
  ) {
    this.kind = codec === 'ws' ? 'ws' : 'tcp';
    this.address = address;
  }

  /** Makes the kernel take nothing from now on: writes stay pending until {@link complete}. */
  stall(): this {
    this.takesAll = false;
    return this;
  }

  /** Every byte written so far, in order. */
  get written(): Buffer {
    return Buffer.concat(this.writes.flat());
  }

  /** Every byte written so far, as latin1 text. */
  get text(): string {
    return this.written.toString('latin1');
  }

  /** The kernel takes `bytes` of what is pending (all of it by default), then the completion fires. */
  complete(bytes = this.pending): void {
    this.pending = Math.max(0, this.pending - bytes);
    this.owner?.onWritten();
  }

  write(views: readonly Buffer[]): void {
    if (!this.writable) throw new Error('write after the connection stopped being writable');
    this.writes.push([...views]);
    if (!this.takesAll) for (const view of views) this.pending += view.length;
  }

  encode(message: Buffer, text: boolean): Buffer {
    return this.codec === 'ws' ? frame(text ? OPCODE_TEXT : OPCODE_BINARY, message) : message;
  }

  pause(): void {
    this.paused = true;
    this.pauses += 1;
  }

  resume(): void {
    this.paused = false;
    this.resumes += 1;
  }

  setIdleTimeout(ms: number): void {
    this.idleTimeout = ms;
  }

  accept(): boolean {
    return this.writable;
  }

  refuse(reason: DenyReason): void {
    this.refused = reason;
    this.writable = false;
  }

  end(reason: ExitReason): void {
    this.ended = reason;
    this.writable = false;
  }

  destroy(): void {
    this.destroyed = true;
    this.writable = false;
  }
}

/** A {@link ConnectionOwner} that only cares about write completions. */
export function completionOwner(onWritten: () => void): ConnectionOwner {
  return {
    onData: () => undefined,
    onWritten,
    onEnd: () => undefined,
    onError: () => undefined,
    onClose: () => undefined,
    onIdle: () => undefined,
  };
}
