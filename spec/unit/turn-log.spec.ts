import { RoomIndex } from '../../lib/fanout/rooms';
import { TurnLog, type Forward } from '../../lib/fanout/turn-log';
import { messageFrames } from '../../lib/framing/websocket';
import type { Codec } from '../../lib/transport/connection';
import { FakeReceiver } from '../helpers/fanout';
import { parseFrames } from '../helpers/ws-frames';

/** A turn log over fake receivers, with its members and rooms kept as the hub keeps them. */
class Fixture {
  readonly members = new Set<FakeReceiver>();
  readonly rooms = new RoomIndex<FakeReceiver>();
  readonly fanning: boolean[] = [];
  readonly log = new TurnLog<FakeReceiver, string>(
    this.members,
    this.rooms,
    (message) => messageFrames(message, true),
    (active) => this.fanning.push(active),
  );

  /** A new member, receiving from now on. */
  add(name: string, codec: Codec = 'stream'): FakeReceiver {
    const receiver = new FakeReceiver(name, codec);
    this.members.add(receiver);
    this.log.enter(receiver);
    return receiver;
  }

  join(receiver: FakeReceiver, ...rooms: string[]): FakeReceiver {
    receiver.rooms ??= new Set();
    for (const room of rooms) this.rooms.join(room, receiver, receiver.rooms);
    return receiver;
  }

  remove(receiver: FakeReceiver): void {
    this.members.delete(receiver);
    if (receiver.rooms !== null) this.rooms.leaveAll(receiver, receiver.rooms);
    this.log.exit(receiver);
  }

  /** Appends a broadcast of `text` (a line) from `sender` to everyone but `except`, or to `rooms`. */
  send(text: string, { sender = null, except = null, rooms = null, toBus = true }: SendOptions = {}): Buffer {
    const message = Buffer.from(`${text}\n`);
    this.log.append(message, sender, except, rooms, toBus);
    return message;
  }
}

interface SendOptions {
  sender?: string | null;
  except?: FakeReceiver | null;
  rooms?: readonly string[] | null;
  toBus?: boolean;
}

/** The lines a stream receiver was written, in order. */
const lines = (receiver: FakeReceiver): string[] => receiver.connection.text.split('\n').slice(0, -1);

let fixture: Fixture;
beforeEach(() => {
  fixture = new Fixture();
});
afterEach(() => {
  fixture.log.stop();
});

describe('TurnLog', () => {
  describe('a turn whose messages each go to one room', () => {
    it('lays the slab out room by room: a member of one room takes its share in one write of one view', () => {
      const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => fixture.add(name));
      fixture.join(a, 'red');
      fixture.join(b, 'red');
      fixture.join(c, 'blue');
      for (let i = 0; i < 3; i += 1) {
        fixture.send(`red ${i}`, { rooms: ['red'] });
        fixture.send(`blue ${i}`, { rooms: ['blue'] });
      }
      fixture.log.fanOut();
      for (const receiver of [a, b]) {
        expect(lines(receiver)).toEqual(['red 0', 'red 1', 'red 2']);
        expect(receiver.connection.writes).toEqual([[expect.any(Buffer)]]);
      }
      expect(lines(c)).toEqual(['blue 0', 'blue 1', 'blue 2']);
      expect(c.connection.writes[0]).toHaveLength(1);
      expect(lines(d)).toEqual([]);
    });

    it('leaves out, in the run, the messages a member is excepted from (its own)', () => {
      const [a, b] = ['a', 'b'].map((name) => fixture.add(name));
      fixture.join(a, 'red');
      fixture.join(b, 'red');
      fixture.send('from a', { rooms: ['red'], except: a });
      fixture.send('blue', { rooms: ['blue'] });
      fixture.send('from b', { rooms: ['red'], except: b });
      fixture.send('from a again', { rooms: ['red'], except: a });
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['from b']);
      expect(lines(b)).toEqual(['from a', 'from a again']);
    });

    it('gives a member of several of the rooms its messages in log order', () => {
      const both = fixture.join(fixture.add('both'), 'red', 'blue');
      const red = fixture.join(fixture.add('red'), 'red');
      fixture.send('r1', { rooms: ['red'] });
      fixture.send('b1', { rooms: ['blue'] });
      fixture.send('r2', { rooms: ['red'] });
      fixture.send('b2', { rooms: ['blue'] });
      fixture.log.fanOut();
      expect(lines(both)).toEqual(['r1', 'b1', 'r2', 'b2']);
      expect(lines(red)).toEqual(['r1', 'r2']);
    });

    it('gives a member that joined in the middle of the turn only what came after', () => {
      const early = fixture.join(fixture.add('early'), 'red');
      fixture.send('before', { rooms: ['red'] });
      const late = fixture.join(fixture.add('late'), 'red');
      fixture.send('after', { rooms: ['red'] });
      fixture.log.fanOut();
      expect(lines(early)).toEqual(['before', 'after']);
      expect(lines(late)).toEqual(['after']);
    });

    it('gives WebSocket members the same layout in frames', () => {
      const ws = fixture.join(fixture.add('ws', 'ws'), 'red');
      fixture.send('blue', { rooms: ['blue'] });
      fixture.send('red 1', { rooms: ['red'] });
      fixture.send('red 2', { rooms: ['red'] });
      fixture.log.fanOut();
      expect(parseFrames(ws.connection.written).map((frame) => frame.payload.toString())).toEqual(['red 1', 'red 2']);
      expect(ws.connection.writes[0]).toHaveLength(1);
    });
  });

  describe('fan-out', () => {
    it("gives every member the turn's messages in one write, as views of one slab shared by all", () => {
      const [a, b, c] = ['a', 'b', 'c'].map((name) => fixture.add(name));
      fixture.send('one');
      fixture.send('two');
      fixture.log.fanOut();
      for (const receiver of [a, b, c]) {
        expect(receiver.connection.writes).toHaveLength(1);
        expect(lines(receiver)).toEqual(['one', 'two']);
      }
      const backing = a.connection.writes[0][0].buffer;
      expect(b.connection.writes[0][0].buffer).toBe(backing);
      expect(c.connection.writes[0][0].buffer).toBe(backing);
    });

    it('uses a single message as it is, without a copy', () => {
      const a = fixture.add('a');
      const message = fixture.send('only');
      fixture.log.fanOut();
      expect(a.connection.writes[0][0]).toBe(message);
    });

    it('skips the except receiver: it gets the other messages in runs, in one write', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      fixture.send('one');
      fixture.send('from a', { sender: 'a', except: a });
      fixture.send('three');
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['one', 'three']);
      expect(a.connection.writes).toHaveLength(1);
      expect(a.connection.writes[0]).toHaveLength(2);
      expect(lines(b)).toEqual(['one', 'from a', 'three']);
    });

    it('gives a member what was broadcast after it entered, and nothing before', () => {
      const a = fixture.add('a');
      fixture.send('before');
      const late = fixture.add('late');
      fixture.send('after');
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['before', 'after']);
      expect(lines(late)).toEqual(['after']);
    });

    it('gives nothing more to a member that exited', () => {
      const a = fixture.add('a');
      fixture.send('one');
      fixture.remove(a);
      fixture.log.fanOut();
      expect(a.connection.writes).toHaveLength(0);
    });

    it('calls afterShare for every member visited, even one that got nothing', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      fixture.send('from a', { except: a });
      fixture.log.fanOut();
      expect(a.connection.writes).toHaveLength(0);
      expect([a.afterShares, b.afterShares]).toEqual([1, 1]);
    });

    it('numbers the logs: a fan-out moves on to the next', () => {
      fixture.add('a');
      const first = fixture.log.seq;
      fixture.send('one');
      expect(fixture.log.length).toBe(1);
      fixture.log.fanOut();
      expect(fixture.log.seq).toBe(first + 1);
      expect(fixture.log.length).toBe(0);
      fixture.log.fanOut(); // nothing to give out: no new log
      expect(fixture.log.seq).toBe(first + 1);
    });

    it('tells when a fan-out starts and ends, and is busy in between', () => {
      fixture.add('a');
      const seen: boolean[] = [];
      fixture.log.forward = () => {
        seen.push(fixture.log.busy);
        return undefined;
      };
      fixture.send('one');
      fixture.log.fanOut();
      expect(fixture.fanning).toEqual([true, false]);
      expect(seen).toEqual([true]);
      expect(fixture.log.busy).toBe(false);
    });

    it('gives WebSocket receivers the frames of one slab of their own, built once for all of them', () => {
      const [ws1, ws2] = [fixture.add('ws1', 'ws'), fixture.add('ws2', 'ws')];
      const stream = fixture.add('stream');
      fixture.send('one');
      fixture.send('two');
      fixture.log.fanOut();
      expect(parseFrames(ws1.connection.written).map((frame) => frame.payload.toString())).toEqual(['one', 'two']);
      expect(ws2.connection.writes[0][0].buffer).toBe(ws1.connection.writes[0][0].buffer);
      expect(lines(stream)).toEqual(['one', 'two']);
    });

    it('writes at the end of the turn what was appended during it', async () => {
      const a = fixture.add('a');
      fixture.send('one');
      expect(a.connection.writes).toHaveLength(0);
      await new Promise((resolve) => setImmediate(resolve));
      expect(lines(a)).toEqual(['one']);
    });

    it('pumps at the end of the turn the queues of receivers that got data of their own', async () => {
      const a = fixture.add('a');
      a.out.queueOwn(Buffer.from('direct\n'));
      fixture.log.flushLater(a);
      expect(a.connection.writes).toHaveLength(0);
      await new Promise((resolve) => setImmediate(resolve));
      expect(lines(a)).toEqual(['direct']);
    });
  });

  describe('rooms', () => {
    it('gives a message to rooms to the members of any of them, once each, and to nobody else', () => {
      const a = fixture.join(fixture.add('a'), 'r1');
      const b = fixture.join(fixture.add('b'), 'r1', 'r2');
      const c = fixture.join(fixture.add('c'), 'r2');
      const d = fixture.add('d');
      const e = fixture.join(fixture.add('e'), 'r3');
      fixture.send('hello rooms', { rooms: ['r1', 'r2'] });
      fixture.log.fanOut();
      expect([a, b, c].map(lines)).toEqual([['hello rooms'], ['hello rooms'], ['hello rooms']]);
      expect(d.connection.writes).toHaveLength(0);
      expect(e.connection.writes).toHaveLength(0);
    });

    it('gives a message to an empty list of rooms to nobody', () => {
      const a = fixture.join(fixture.add('a'), 'r1');
      fixture.send('to nobody', { rooms: [] });
      fixture.log.fanOut();
      expect(a.connection.writes).toHaveLength(0);
    });

    it('applies each message its rooms in a log that mixes rooms and everyone', () => {
      const a = fixture.join(fixture.add('a'), 'r1');
      const d = fixture.add('d');
      fixture.send('all 1');
      fixture.send('r1 only', { rooms: ['r1'] });
      fixture.send('all 2');
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['all 1', 'r1 only', 'all 2']);
      expect(a.connection.writes[0]).toHaveLength(1); // one run of the slab
      expect(lines(d)).toEqual(['all 1', 'all 2']);
    });

    it('gives a member in none of the rooms of a rooms-only log the next log from its start', () => {
      fixture.join(fixture.add('a'), 'r1');
      const d = fixture.add('d');
      fixture.send('r1 only', { rooms: ['r1'] });
      fixture.log.fanOut();
      fixture.send('everyone');
      fixture.send('everyone again');
      fixture.log.fanOut();
      expect(lines(d)).toEqual(['everyone', 'everyone again']);
    });

    it('gives a member of a rooms-only log only what came after it entered', () => {
      fixture.join(fixture.add('a'), 'r1');
      fixture.send('before', { rooms: ['r1'] });
      const late = fixture.join(fixture.add('late'), 'r1');
      fixture.send('after', { rooms: ['r1'] });
      fixture.log.fanOut();
      expect(lines(late)).toEqual(['after']);
    });

    it('gives a member that joined a room nothing sent to it before (excepts apply in rooms too)', () => {
      const a = fixture.join(fixture.add('a'), 'r1');
      const b = fixture.join(fixture.add('b'), 'r1');
      fixture.send('from a', { rooms: ['r1'], except: a });
      fixture.log.fanOut();
      expect(a.connection.writes).toHaveLength(0);
      expect(lines(b)).toEqual(['from a']);
    });
  });

  describe('forward filter', () => {
    it('is given each delivery: the bytes about to be written, the receiver and the sender', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      const calls: string[] = [];
      fixture.log.forward = (message, receiver, sender) => {
        calls.push(`${message.toString().trim()}>${receiver.name}<${sender}`);
        return undefined;
      };
      fixture.send('one', { sender: 'a', except: a });
      fixture.send('two', { sender: null });
      fixture.log.fanOut();
      expect(calls).toEqual(['two>a<null', 'one>b<a', 'two>b<null']);
      expect(lines(b)).toEqual(['one', 'two']);
    });

    it('keeps the shared bytes, views of the slab, for undefined', () => {
      const a = fixture.add('a');
      fixture.log.forward = () => undefined;
      fixture.send('one');
      fixture.send('two');
      fixture.log.fanOut();
      expect(a.connection.writes[0]).toHaveLength(1);
      expect(lines(a)).toEqual(['one', 'two']);
    });

    it('writes a Buffer it returns instead, as given, to that receiver alone', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      const replacement = Buffer.from('just for b\n');
      fixture.log.forward = (message, receiver) =>
        receiver === b && message.toString() === 'two\n' ? replacement : undefined;
      fixture.send('one');
      fixture.send('two');
      fixture.send('three');
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['one', 'two', 'three']);
      expect(lines(b)).toEqual(['one', 'just for b', 'three']);
      expect(b.connection.writes).toHaveLength(1);
      expect(b.connection.writes[0][1]).toBe(replacement);
    });

    it('encodes a replacement for a WebSocket receiver', () => {
      const ws = fixture.add('ws', 'ws');
      fixture.log.forward = () => Buffer.from('replaced');
      fixture.send('one');
      fixture.log.fanOut();
      expect(parseFrames(ws.connection.written).map((frame) => frame.payload.toString())).toEqual(['replaced']);
    });

    it('skips the receiver for null', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      fixture.log.forward = (message, receiver) =>
        receiver === a && message.toString() === 'one\n' ? null : undefined;
      fixture.send('one');
      fixture.send('two');
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['two']);
      expect(lines(b)).toEqual(['one', 'two']);
    });

    it('is not called for a receiver the target leaves out', () => {
      const a = fixture.join(fixture.add('a'), 'r1');
      fixture.add('d');
      const forward = jest.fn<ReturnType<Forward<FakeReceiver, string>>, Parameters<Forward<FakeReceiver, string>>>(
        () => undefined,
      );
      fixture.log.forward = forward;
      fixture.send('from a', { except: a });
      fixture.send('to r1', { rooms: ['r1'] });
      fixture.log.fanOut();
      expect(forward.mock.calls.map(([message, receiver]) => `${message.toString().trim()}>${receiver.name}`)).toEqual([
        'to r1>a',
        'from a>d',
      ]);
    });
  });

  describe('catchUp', () => {
    it('gives a member what was broadcast before a direct send to it, so the call order holds', async () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      fixture.send('one');
      fixture.log.catchUp(a); // what Session.send does first
      a.out.queueOwn(Buffer.from('direct\n'));
      fixture.log.flushLater(a);
      fixture.send('two');
      await new Promise((resolve) => setImmediate(resolve));
      expect(lines(a)).toEqual(['one', 'direct', 'two']);
      expect(lines(b)).toEqual(['one', 'two']);
    });

    it('gives nothing twice: a member caught up takes only what came after at the fan-out', () => {
      const a = fixture.add('a');
      fixture.send('one');
      fixture.log.catchUp(a);
      fixture.log.catchUp(a);
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['one']);
    });

    it('applies excepts and the forward filter to what it gives', () => {
      const a = fixture.add('a');
      fixture.log.forward = (message) => (message.toString() === 'muted\n' ? null : undefined);
      fixture.send('from a', { except: a });
      fixture.send('muted');
      fixture.send('kept');
      fixture.log.catchUp(a);
      expect(lines(a)).toEqual(['kept']);
    });

    // Suspected bug (lib/fanout/turn-log.ts, catchUp -> give): a catch-up made during a fan-out (user code in a
    // forward filter sending to a member not visited yet, as Session.send does) reuses the one scratch Share
    // while the current receiver's share is being collected in it: what was collected so far for that receiver
    // is reset, and it silently loses those messages.
    it('leaves the share of the receiver being served whole when a member not visited yet is caught up', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      fixture.log.forward = (message, receiver) => {
        if (receiver === a && message.toString() === 'three\n') fixture.log.catchUp(b); // e.g. b.send(receipt)
        return undefined;
      };
      fixture.send('one');
      fixture.send('from a', { except: a });
      fixture.send('three');
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['one', 'three']);
      expect(lines(b)).toEqual(['one', 'from a', 'three']);
    });
  });

  describe('the early fan-out threshold', () => {
    it('gives the log out at once when it holds threshold bytes, before the end of the turn', () => {
      const a = fixture.add('a');
      fixture.log.threshold = 1000;
      fixture.send('x'.repeat(400));
      expect(a.connection.writes).toHaveLength(0);
      fixture.send('y'.repeat(400)); // 802 bytes and two overheads of 128: over 1000
      expect(a.connection.writes).toHaveLength(1);
      expect(lines(a).map((line) => line[0])).toEqual(['x', 'y']);
      fixture.send('z');
      expect(fixture.log.length).toBe(1);
    });

    it('does not give out early during a fan-out: broadcasts made meanwhile go to the next log', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      fixture.log.threshold = 1;
      let sent = false;
      fixture.log.forward = (_message, receiver) => {
        if (receiver === a && !sent) {
          sent = true;
          fixture.send('during');
        }
        return undefined;
      };
      fixture.send('first');
      expect(lines(a)).toEqual(['first']);
      expect(lines(b)).toEqual(['first']);
      expect(fixture.log.length).toBe(1);
      fixture.log.fanOut();
      expect(lines(a)).toEqual(['first', 'during']);
      expect(lines(b)).toEqual(['first', 'during']);
    });
  });

  describe('defer', () => {
    it('runs at once outside a fan-out', () => {
      const work = jest.fn();
      fixture.log.defer(work);
      expect(work).toHaveBeenCalledTimes(1);
    });

    it('runs after the fan-out in progress, once every receiver got its share', () => {
      const [a, b] = [fixture.add('a'), fixture.add('b')];
      const seen: string[] = [];
      fixture.log.forward = (_message, receiver) => {
        if (receiver === a) {
          fixture.log.defer(() => {
            seen.push(`deferred: b has ${lines(b).length}, fanning ${fixture.log.busy}`);
          });
        }
        return undefined;
      };
      fixture.send('one');
      fixture.log.fanOut();
      expect(seen).toEqual(['deferred: b has 1, fanning false']);
      expect(fixture.fanning).toEqual([true, false]);
    });
  });

  describe('outlet', () => {
    it("gets the turn's messages with their senders, rooms and bus flags, once per fan-out", () => {
      fixture.add('a');
      const batches: unknown[] = [];
      fixture.log.outlet = (messages, senders, rooms, toBus) => {
        batches.push({
          messages: messages.map((message) => message.toString()),
          senders: [...senders],
          rooms: [...rooms],
          toBus: [...toBus],
        });
      };
      fixture.send('one', { sender: 's1' });
      fixture.send('two', { rooms: ['r'], toBus: false });
      fixture.log.fanOut();
      fixture.log.fanOut();
      expect(batches).toEqual([
        { messages: ['one\n', 'two\n'], senders: ['s1', null], rooms: [null, ['r']], toBus: [true, false] },
      ]);
    });

    it('gets the messages even with no local member', () => {
      const outlet = jest.fn();
      fixture.log.outlet = outlet;
      fixture.send('lonely');
      fixture.log.fanOut();
      expect(outlet).toHaveBeenCalledTimes(1);
    });
  });
});
