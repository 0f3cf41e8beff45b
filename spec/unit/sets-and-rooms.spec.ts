import { ClientsView, EMPTY_SET, ReadonlySetView } from '../../lib/core/readonly-set';
import { inAnyRoom, RoomIndex } from '../../lib/fanout/rooms';

describe('ReadonlySetView', () => {
  it('sees every change of the set it shows', () => {
    const set = new Set(['a']);
    const view = new ReadonlySetView(set);
    set.add('b');
    expect(view.size).toBe(2);
    expect(view.has('b')).toBe(true);
    expect([...view]).toEqual(['a', 'b']);
    expect([...view.keys()]).toEqual(['a', 'b']);
    expect([...view.values()]).toEqual(['a', 'b']);
    expect([...view.entries()]).toEqual([
      ['a', 'a'],
      ['b', 'b'],
    ]);
  });

  it('offers no way to change it, from JavaScript either', () => {
    const view = new ReadonlySetView(new Set([1]));
    for (const name of ['add', 'delete', 'clear']) expect(name in view).toBe(false);
    expect(Object.prototype.toString.call(view)).toBe('[object ReadonlySet]');
  });

  it('passes itself, not the set, to forEach callbacks, with thisArg', () => {
    const set = new Set([1, 2]);
    const view = new ReadonlySetView(set);
    const context = { seen: [] as number[] };
    view.forEach(function (this: typeof context, value, key, owner) {
      expect(key).toBe(value);
      expect(owner).toBe(view);
      this.seen.push(value);
    }, context);
    expect(context.seen).toEqual([1, 2]);
  });

  it('has an empty shared instance', () => {
    expect(EMPTY_SET.size).toBe(0);
    expect([...EMPTY_SET]).toEqual([]);
  });
});

describe('ClientsView', () => {
  interface Member {
    readonly client: { readonly session: Member; readonly name: string };
  }
  function member(name: string): Member {
    const self: { client?: Member['client'] } = {};
    self.client = { session: self as Member, name };
    return self as Member;
  }

  it('shows the clients of the members, live, in order', () => {
    const members = new Set<Member>();
    const view = new ClientsView<Member['client'], Member>(members);
    const [a, b] = [member('a'), member('b')];
    members.add(a);
    members.add(b);
    expect([...view].map((client) => client.name)).toEqual(['a', 'b']);
    expect(view.size).toBe(2);
    members.delete(a);
    expect([...view.values()].map((client) => client.name)).toEqual(['b']);
  });

  it('has a client only while its session is a member, and never something else', () => {
    const members = new Set<Member>();
    const view = new ClientsView<Member['client'], Member>(members);
    const a = member('a');
    expect(view.has(a.client)).toBe(false);
    members.add(a);
    expect(view.has(a.client)).toBe(true);
    expect(view.has(null as unknown as Member['client'])).toBe(false);
    expect(view.has({} as Member['client'])).toBe(false);
  });

  it('offers no way to change it', () => {
    const view = new ClientsView(new Set<Member>());
    for (const name of ['add', 'delete', 'clear']) expect(name in view).toBe(false);
  });
});

describe('RoomIndex', () => {
  it('keeps both directions: the members of a room, and the rooms of a member', () => {
    const index = new RoomIndex<string>();
    const rooms = new Set<string>();
    expect(index.join('r1', 'a', rooms)).toBe(true);
    expect(index.join('r1', 'a', rooms)).toBe(false);
    expect(index.join('r2', 'a', rooms)).toBe(true);
    expect([...rooms]).toEqual(['r1', 'r2']);
    expect([...index.members('r1')]).toEqual(['a']);
    expect([...index.names()]).toEqual(['r1', 'r2']);
  });

  it('has a room only while it has members', () => {
    const index = new RoomIndex<string>();
    const [a, b] = [new Set<string>(), new Set<string>()];
    index.join('r', 'a', a);
    index.join('r', 'b', b);
    expect(index.leave('r', 'a', a)).toBe(true);
    expect(index.leave('r', 'a', a)).toBe(false);
    expect([...index.names()]).toEqual(['r']);
    index.leave('r', 'b', b);
    expect([...index.names()]).toEqual([]);
    expect(index.members('r').size).toBe(0);
  });

  it('takes a member out of every room at once', () => {
    const index = new RoomIndex<string>();
    const [a, b] = [new Set<string>(), new Set<string>()];
    index.join('r1', 'a', a);
    index.join('r2', 'a', a);
    index.join('r2', 'b', b);
    index.leaveAll('a', a);
    expect(a.size).toBe(0);
    expect([...index.names()]).toEqual(['r2']);
    expect([...index.members('r2')]).toEqual(['b']);
  });
});

describe('inAnyRoom', () => {
  it('is true when the member is in any of the rooms', () => {
    expect(inAnyRoom(new Set(['a', 'b']), ['c', 'b'])).toBe(true);
    expect(inAnyRoom(new Set(['a']), ['b'])).toBe(false);
    expect(inAnyRoom(new Set(['a']), [])).toBe(false);
    expect(inAnyRoom(null, ['a'])).toBe(false);
    expect(inAnyRoom(new Set(), ['a'])).toBe(false);
  });
});
