/**
 * The bench's rooms for its plain loops (naive, corked): a client whose first line is `/room NAME` moves
 * from the lobby (everyone who named no room) to that room, and the line is not broadcast. A client whose
 * first bytes are anything else stays in the lobby: the loops behave as before for every other case, and
 * keep nothing more per connection than a flag (a first line split over reads waits here).
 */
import type { Socket } from 'node:net';

const PREFIX = Buffer.from('/room ');
/** A first line longer than this is data, whatever it starts with. */
const MAX_LINE = 1024;

/** A client's first bytes: the room they name (null: none) and the data after them (null: none). */
export interface FirstLine {
  readonly room: string | null;
  readonly rest: Buffer | null;
}

/** Who is where: the lobby and the rooms named so far. */
export class Rooms {
  readonly lobby = new Set<Socket>();
  private readonly rooms = new Map<string, Set<Socket>>();
  /** First lines begun but not complete yet. */
  private readonly pending = new Map<Socket, Buffer>();

  /** Moves `socket` from `from` to `room`; returns the room's members. */
  move(socket: Socket, from: Set<Socket>, room: string): Set<Socket> {
    from.delete(socket);
    let members = this.rooms.get(room);
    if (members === undefined) this.rooms.set(room, (members = new Set()));
    members.add(socket);
    return members;
  }

  /** Reads the first bytes of `socket`: null while a `/room` line is not complete. */
  firstLine(socket: Socket, chunk: Buffer): FirstLine | null {
    const before = this.pending.get(socket);
    const data = before === undefined ? chunk : Buffer.concat([before, chunk]);
    this.pending.delete(socket);
    const n = Math.min(data.length, PREFIX.length);
    if (data.compare(PREFIX, 0, n, 0, n) !== 0) return { room: null, rest: data };
    const nl = data.indexOf(0x0a);
    if (nl < 0) {
      if (data.length > MAX_LINE) return { room: null, rest: data };
      this.pending.set(socket, data);
      return null;
    }
    return {
      room: data.toString('utf8', PREFIX.length, nl),
      rest: nl + 1 < data.length ? data.subarray(nl + 1) : null,
    };
  }

  /** Forgets a client that left. */
  leave(socket: Socket, members: Set<Socket>): void {
    members.delete(socket);
    this.pending.delete(socket);
  }
}
