import { randomBytes } from 'node:crypto';
import {
  Multiplexer,
  type Client,
  type Decoder,
  type ErrorContext,
  type FilterResult,
  type Framing,
  type MessageSink,
} from '../lib';
import { connectAll, delay, startMux, waitFor } from './helpers/net';
import { joined, serve } from './helpers/serve';

const tag =
  (suffix: string) =>
  (data: Buffer): string =>
    `${data.toString()}${suffix}`;

describe('addFilter', () => {
  it('runs filters in registration order, passing each filter the previous result', async () => {
    const seen: string[] = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter((data) => {
        seen.push(`a:${data.toString()}`);
        return `${data.toString()}|a`;
      });
      m.addFilter((data) => {
        seen.push(`b:${data.toString()}`);
        return `${data.toString()}|b`;
      });
      m.addFilter((data) => {
        seen.push(`c:${data.toString()}`);
        return Buffer.from(`${data.toString()}|c`);
      });
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('x\n');
    await bob.waitForText('x|a|b|c\n');
    expect(seen).toEqual(['a:x', 'b:x|a', 'c:x|a|b']);
  });

  it('gives a filter the sending client: its socket, address and port', async () => {
    const clients: Client[] = [];
    const { mux, port } = await startMux({}, (m) => {
      m.addFilter((_data, client) => {
        clients.push(client);
        return undefined;
      });
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    await alice.write('ping');
    await bob.waitForText('ping');
    expect(clients[0]).toBe(aliceOnServer);
    expect(clients[0].address).toBe('127.0.0.1');
    expect(clients[0].port).toBe(alice.socket.localPort);
    expect(clients[0].socket.remotePort).toBe(alice.socket.localPort);
  });

  it('sends a string result as UTF-8', async () => {
    const { mux, port } = await startMux({}, (m) => m.addFilter(() => 'héllo ✓'));
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('x');
    await bob.waitForBytes(Buffer.byteLength('héllo ✓'));
    expect(bob.data.equals(Buffer.from('héllo ✓', 'utf8'))).toBe(true);
  });

  it('passes the data on unchanged when a filter returns undefined', async () => {
    const seen: string[] = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter(() => undefined);
      m.addFilter((data) => {
        seen.push(data.toString());
        return undefined;
      });
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('same\r\n');
    await bob.waitForText('same\r\n');
    expect(seen).toEqual(['same']);
    expect(bob.text).toBe('same\r\n');
  });

  it.each([
    ['null', null],
    ['false', false],
  ] as const)('drops the message when a filter returns %s, and runs no later filter', async (_name, drop) => {
    const later = jest.fn(() => undefined);
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter((data) => (data.toString() === 'secret' ? drop : undefined));
      m.addFilter(later);
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('secret\npublic\n');
    await bob.waitForText('public\n');
    expect(bob.text).toBe('public\n');
    expect(later).toHaveBeenCalledTimes(1);
    expect(mux.stats().filtered).toBe(1);
  });

  it('throws a TypeError when given something other than a function', () => {
    const mux = new Multiplexer();
    const notAFunction = 'upper' as unknown as () => undefined;
    expect(() => mux.addFilter(notAFunction)).toThrow(TypeError);
  });

  describe('async filters', () => {
    it('broadcasts what an async filter resolves to', async () => {
      const { mux, port } = await startMux({ framing: 'line' }, (m) => {
        m.addFilter(async (data) => {
          await delay(5);
          return data.toString().toUpperCase();
        });
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      await alice.write('shout\n');
      await bob.waitForText('SHOUT\n');
    });

    it("keeps each sender's messages in the order sent, whatever each filter takes", async () => {
      const { mux, port } = await startMux({ framing: 'line' }, (m) => {
        m.addFilter(async (data) => {
          await delay(Math.random() * 8);
          return `${data.toString()}!`;
        });
        m.addFilter((data) => (Math.random() < 0.5 ? data : delay(Math.random() * 4).then(() => data)));
      });
      const [alice, bob, carol] = await connectAll(mux, port, 3);
      const count = 40;
      const lines = (who: string): string => Array.from({ length: count }, (_, i) => `${who}${i}\n`).join('');
      await Promise.all([alice.write(lines('a')), bob.write(lines('b'))]);
      await carol.waitForBytes(Buffer.byteLength(lines('a')) + Buffer.byteLength(lines('b')) + 2 * count, 10_000);
      const received = carol.text.split('\n').filter((text) => text !== '');
      const fromAlice = received.filter((text) => text.startsWith('a'));
      const fromBob = received.filter((text) => text.startsWith('b'));
      expect(fromAlice).toEqual(Array.from({ length: count }, (_, i) => `a${i}!`));
      expect(fromBob).toEqual(Array.from({ length: count }, (_, i) => `b${i}!`));
    });

    it('still delivers what a client sent before leaving while its async filter was running', async () => {
      const { mux, port } = await startMux({ framing: 'line' }, (m) => {
        m.addFilter(async (data) => {
          await delay(20);
          return data;
        });
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      alice.socket.end('first\nsecond\nlast');
      await bob.waitForText('first\nsecond\nlast\n');
    });

    it('keeps order across a mix of sync and async results in one chain', async () => {
      const { mux, port } = await startMux({ framing: 'line' }, (m) => {
        m.addFilter((data) => (Number(data.toString()) % 3 === 0 ? delay(10).then(() => data) : data));
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      const expected = Array.from({ length: 30 }, (_, i) => `${i}\n`).join('');
      await alice.write(expected);
      await bob.waitForBytes(expected.length);
      expect(bob.text).toBe(expected);
    });
  });

  describe('a filter that throws', () => {
    it('lets the data continue unchanged to the next filter and out, as Tcl does', async () => {
      const { mux, port } = await startMux({ framing: 'line' }, (m) => {
        m.addFilter(tag('|a'));
        m.addFilter(() => {
          throw new Error('broken filter');
        });
        m.addFilter(tag('|c'));
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      await alice.write('x\n');
      await bob.waitForText('x|a|c\n');
    });

    it("reports the error through the 'error' event and stats().filterErrors", async () => {
      const errors: Array<[Error, ErrorContext]> = [];
      const { mux, port } = await startMux({}, (m) => {
        m.addFilter(() => {
          throw new Error('broken filter');
        });
        m.on('error', (error, context) => errors.push([error, context]));
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      const aliceOnServer = await joined(mux, alice);
      await alice.write('data');
      await bob.waitForText('data');
      expect(errors).toHaveLength(1);
      expect(errors[0][0].message).toBe('broken filter');
      expect(errors[0][1].source).toBe('filter');
      expect(errors[0][1].client).toBe(aliceOnServer);
      expect(mux.stats().filterErrors).toBe(1);
    });

    it('is treated the same when an async filter rejects', async () => {
      const errors: Error[] = [];
      const { mux, port } = await startMux({ framing: 'line' }, (m) => {
        m.addFilter(async () => {
          await delay(1);
          throw new Error('async failure');
        });
        m.addFilter(tag('|after'));
        m.on('error', (error) => errors.push(error));
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      await alice.write('x\n');
      await bob.waitForText('x|after\n');
      expect(errors.map((error) => error.message)).toEqual(['async failure']);
      expect(mux.stats().filterErrors).toBe(1);
    });

    it("drops the message when filterErrors is 'drop', and lets the next one through", async () => {
      const { mux, port } = await startMux({ framing: 'line', filterErrors: 'drop' }, (m) => {
        m.addFilter((data) => {
          if (data.toString() === 'bad') throw new Error('no');
          return undefined;
        });
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      await alice.write('bad\ngood\n');
      await bob.waitForText('good\n');
      expect(bob.text).toBe('good\n');
      expect(mux.stats().filterErrors).toBe(1);
    });

    it('does not throw into the server when no error listener is attached', async () => {
      const { mux, port } = await startMux({}, (m) => {
        m.addFilter(() => {
          throw new Error('unobserved');
        });
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      await alice.write('still delivered');
      await bob.waitForText('still delivered');
      expect(mux.stats().filterErrors).toBe(1);
    });
  });

  describe('line framing', () => {
    it('gives the filter the line without its terminator, and receivers the result plus \\n', async () => {
      const seen: string[] = [];
      const { mux, port } = await startMux({ framing: 'line' }, (m) => {
        m.addFilter((line) => {
          seen.push(line.toString());
          return `<${line.toString()}>`;
        });
      });
      const [alice, bob] = await connectAll(mux, port, 2);
      await alice.write('one\r\ntw');
      await alice.write('o\nthree\n');
      await bob.waitForText('<three>\n');
      expect(seen).toEqual(['one', 'two', 'three']);
      expect(bob.text).toBe('<one>\n<two>\n<three>\n');
    });
  });

  describe('a custom framing', () => {
    /** Messages of up to 255 bytes, each preceded by its length in one byte. */
    class LengthPrefixedDecoder implements Decoder {
      private held = Buffer.alloc(0);

      get bufferedBytes(): number {
        return this.held.length;
      }

      write(chunk: Buffer, sink: MessageSink): void {
        this.held = Buffer.concat([this.held, chunk]);
        while (this.held.length > 0 && this.held.length >= 1 + this.held[0]) {
          const wire = this.held.subarray(0, 1 + this.held[0]);
          sink.message(wire.subarray(1), wire);
          this.held = this.held.subarray(wire.length);
        }
      }

      end(): void {
        this.held = Buffer.alloc(0);
      }
    }

    const lengthPrefixed: Framing = {
      name: 'length-prefixed',
      createDecoder: () => new LengthPrefixedDecoder(),
      encode: (payload) => Buffer.concat([Buffer.from([payload.length]), payload]),
    };

    const frame = (text: string): Buffer => lengthPrefixed.encode(Buffer.from(text));

    it('gives filters one message of it, and receivers the result encoded by it', async () => {
      const seen: string[] = [];
      const { mux, port } = await startMux({ framing: lengthPrefixed }, (m) => {
        m.addFilter((message) => {
          seen.push(message.toString());
          return message.toString() === 'change me' ? 'changed' : undefined;
        });
      });
      expect(mux.framing.name).toBe('length-prefixed');
      const [alice, bob] = await connectAll(mux, port, 2);
      const stream = Buffer.concat([frame('keep me'), frame('change me')]);
      await alice.write(stream.subarray(0, 3));
      await alice.write(stream.subarray(3));
      const expected = Buffer.concat([frame('keep me'), frame('changed')]);
      await bob.waitForBytes(expected.length);
      expect(seen).toEqual(['keep me', 'change me']);
      expect(bob.data.equals(expected)).toBe(true);
    });
  });

  describe('raw framing', () => {
    it('delivers random binary data byte for byte, through a filter that keeps it', async () => {
      const { mux, port } = await startMux({}, (m) => m.addFilter(() => undefined));
      const [alice, bob] = await connectAll(mux, port, 2);
      const payload = randomBytes(256 * 1024);
      await alice.write(payload);
      await bob.waitForBytes(payload.length);
      expect(bob.data.equals(payload)).toBe(true);
    });

    it('delivers a multi-megabyte payload byte for byte to every receiver', async () => {
      const { mux, port } = await startMux();
      const [alice, bob, carol] = await connectAll(mux, port, 3);
      const payload = randomBytes(6 * 1024 * 1024);
      await alice.write(payload);
      await bob.waitForBytes(payload.length, 20_000);
      await carol.waitForBytes(payload.length, 20_000);
      expect(bob.data.equals(payload)).toBe(true);
      expect(carol.data.equals(payload)).toBe(true);
      expect(alice.received).toBe(0);
    });
  });
});

describe('filter()', () => {
  class Bracketing extends Multiplexer {
    override filter(data: Buffer, client: Client): FilterResult | Promise<FilterResult> {
      const result = super.filter(data, client);
      return Promise.resolve(result).then((value) => (value instanceof Buffer ? `[${value.toString()}]` : value));
    }
  }

  it('can be overridden in a subclass that calls super.filter to keep the registered chain', async () => {
    const mux = new Bracketing({ framing: 'line', debugLevel: 'critical' });
    mux.addFilter(tag('|chain'));
    mux.addFilter((data) => (data.toString().startsWith('drop') ? null : undefined));
    const port = await serve(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('hi\ndrop me\nbye\n');
    await bob.waitForText('[bye|chain]\n');
    expect(bob.text).toBe('[hi|chain]\n[bye|chain]\n');
  });

  it('runs an override even when no filter is registered', async () => {
    const mux = new Bracketing({ framing: 'line', debugLevel: 'critical' });
    const port = await serve(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('plain\n');
    await bob.waitForText('[plain]\n');
  });

  it('lets the data through unchanged when an override throws, and reports it', async () => {
    class Throwing extends Multiplexer {
      override filter(): FilterResult {
        throw new Error('override failed');
      }
    }
    const mux = new Throwing({ debugLevel: 'critical' });
    const errors: string[] = [];
    mux.on('error', (error) => errors.push(error.message));
    const port = await serve(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('as is');
    await bob.waitForText('as is');
    expect(errors).toEqual(['override failed']);
    expect(mux.stats().filterErrors).toBe(1);
  });
});

describe('broadcast()', () => {
  interface Room {
    room: string;
  }

  /** Sends each message only to the clients in the sender's room. */
  class Rooms extends Multiplexer<Room> {
    readonly calls: Array<[string, number]> = [];

    protected override broadcast(message: Buffer, sender: Client<Room>): void {
      this.calls.push([message.toString(), sender.id]);
      for (const client of this.clients) {
        if (client !== sender && client.state.room === sender.state.room) client.send(message);
      }
    }
  }

  it('can be overridden in a subclass to choose the receivers', async () => {
    const mux = new Rooms({ debugLevel: 'critical' });
    let joinedCount = 0;
    mux.on('connect', (client) => {
      client.state.room = joinedCount < 2 ? 'red' : 'blue';
      joinedCount += 1;
    });
    const port = await serve(mux);
    const [red1] = await connectAll(mux, port, 1);
    const [red2] = await connectAll(mux, port, 1);
    const [blue1] = await connectAll(mux, port, 1);
    await red1.write('for red');
    await red2.waitForText('for red');
    await blue1.write('for blue');
    await delay(50);
    expect(blue1.received).toBe(0);
    expect(red1.text).toBe('');
    expect(red2.text).toBe('for red');
  });

  it('is given the filtered message and its sender', async () => {
    const mux = new Rooms({ framing: 'line', debugLevel: 'critical' });
    mux.addFilter((line) => line.toString().toUpperCase());
    mux.on('connect', (client) => {
      client.state.room = 'one';
    });
    const port = await serve(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    await alice.write('quiet\n');
    await bob.waitForText('QUIET\n');
    await waitFor(() => mux.calls.length === 1, 'broadcast() to be called');
    expect(mux.calls).toEqual([['QUIET\n', aliceOnServer.id]]);
  });
});
