/**
 * A read-only window on a Set the library keeps: it sees every change, and offers no way to make one (from
 * TypeScript or JavaScript alike).
 */
export class ReadonlySetView<T> implements ReadonlySet<T> {
  constructor(private readonly set: ReadonlySet<T>) {}

  get size(): number {
    return this.set.size;
  }

  has(value: T): boolean {
    return this.set.has(value);
  }

  forEach(callback: (value: T, key: T, set: ReadonlySet<T>) => void, thisArg?: unknown): void {
    for (const value of this.set) callback.call(thisArg, value, value, this);
  }

  entries(): SetIterator<[T, T]> {
    return this.set.entries();
  }

  keys(): SetIterator<T> {
    return this.set.keys();
  }

  values(): SetIterator<T> {
    return this.set.values();
  }

  [Symbol.iterator](): SetIterator<T> {
    return this.set.values();
  }

  get [Symbol.toStringTag](): string {
    return 'ReadonlySet';
  }
}

/** A read-only, live window on the clients of a set of sessions. */
export class ClientsView<C, M extends { readonly client: C }> implements ReadonlySet<C> {
  constructor(private readonly members: ReadonlySet<M>) {}

  get size(): number {
    return this.members.size;
  }

  has(client: C): boolean {
    const session = (client as { session?: M } | null)?.session;
    return session !== undefined && this.members.has(session);
  }

  forEach(callback: (value: C, key: C, set: ReadonlySet<C>) => void, thisArg?: unknown): void {
    for (const member of this.members) callback.call(thisArg, member.client, member.client, this);
  }

  *entries(): SetIterator<[C, C]> {
    for (const member of this.members) yield [member.client, member.client];
  }

  keys(): SetIterator<C> {
    return this.values();
  }

  *values(): SetIterator<C> {
    for (const member of this.members) yield member.client;
  }

  [Symbol.iterator](): SetIterator<C> {
    return this.values();
  }

  get [Symbol.toStringTag](): string {
    return 'ReadonlySet';
  }
}

/** An empty read-only set, shared. */
export const EMPTY_SET: ReadonlySet<never> = new ReadonlySetView(new Set<never>());
