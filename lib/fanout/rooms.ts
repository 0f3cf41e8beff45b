/**
 * Which members are in which room. Rooms exist while they have members; a member may be in many.
 * Membership is looked up per receiver during a fan-out, so both directions are kept.
 */
export class RoomIndex<M> {
  private readonly rooms = new Map<string, Set<M>>();

  /** The members of `room` (an empty set when it has none). */
  members(room: string): ReadonlySet<M> {
    return this.rooms.get(room) ?? NONE;
  }

  /** Names of the rooms that have members. */
  names(): IterableIterator<string> {
    return this.rooms.keys();
  }

  /** Adds `member` to `room`; false when it was in it already. */
  join(room: string, member: M, memberRooms: Set<string>): boolean {
    if (memberRooms.has(room)) return false;
    memberRooms.add(room);
    let members = this.rooms.get(room);
    if (members === undefined) this.rooms.set(room, (members = new Set()));
    members.add(member);
    return true;
  }

  /** Takes `member` out of `room`; false when it was not in it. */
  leave(room: string, member: M, memberRooms: Set<string>): boolean {
    if (!memberRooms.delete(room)) return false;
    const members = this.rooms.get(room);
    members?.delete(member);
    if (members?.size === 0) this.rooms.delete(room);
    return true;
  }

  /** Takes `member` out of every room it is in. */
  leaveAll(member: M, memberRooms: Set<string>): void {
    for (const room of memberRooms) {
      const members = this.rooms.get(room);
      members?.delete(member);
      if (members?.size === 0) this.rooms.delete(room);
    }
    memberRooms.clear();
  }
}

const NONE: ReadonlySet<never> = new Set<never>();

/** True when a member in `memberRooms` is in one of `rooms` at least. */
export function inAnyRoom(memberRooms: ReadonlySet<string> | null, rooms: readonly string[]): boolean {
  if (memberRooms === null || memberRooms.size === 0) return false;
  for (let i = 0; i < rooms.length; i += 1) if (memberRooms.has(rooms[i])) return true;
  return false;
}
