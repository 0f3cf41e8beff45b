import { Multiplexer, type Client, type MultiplexerOptions, type Target } from '../lib';
import { connectAll, delay, startMux, type TestClient } from './helpers/net';
import { joined, serve } from './helpers/serve';

const LINE: MultiplexerOptions = { framing: 'line' };

function lines(client: TestClient): string[] {
  return client.text.split('\n').filter((line) => line !== '');
}

describe('rooms', () => {
  it('join, leave and rooms: a read-only, live set of the names', async () => {
    const { mux, port } = await startMux(LINE);
    const [alice] = await connectAll(mux, port, 1);
    const client = await joined(mux, alice);
    const rooms = client.rooms;
    expect(client.join('blue')).toBe(true);
    expect(client.join('blue')).toBe(false);
    expect(client.join('green')).toBe(true);
    expect([...rooms].sort()).toEqual(['blue', 'green']);
    expect(client.leave('blue')).toBe(true);
    expect(client.leave('blue')).toBe(false);
    expect([...rooms]).toEqual(['green']);
    expect('add' in rooms).toBe(false);
    expect(() => (rooms as Set<string>).add('red')).toThrow(TypeError);
    expect(() => client.join('')).toThrow(TypeError);
    expect([...mux.room('green')]).toEqual([client]);
    expect(mux.room('blue').size).toBe(0);
  });

  it('sendToRoom reaches the members of the room (or of any of several), each once', async () => {
    const { mux, port } = await startMux(LINE);
    const [a, b, c, d] = await connectAll(mux, port, 4);
    (await joined(mux, a)).join('blue');
    (await joined(mux, b)).join('blue');
    (await joined(mux, b)).join('green');
    (await joined(mux, c)).join('green');
    mux.sendToRoom('blue', 'blue only\n');
    mux.sendToRoom(['blue', 'green'], 'blue or green\n');
    mux.sendToRoom([], 'nobody\n');
    mux.sendToRoom('green', 'green but c\n', await joined(mux, c));
    await b.waitForText('green but c\n');
    await c.waitForText('blue or green\n');
    await delay(30);
    expect(lines(a)).toEqual(['blue only', 'blue or green']);
    expect(lines(b)).toEqual(['blue only', 'blue or green', 'green but c']);
    expect(lines(c)).toEqual(['blue or green']);
    expect(lines(d)).toEqual([]);
  });

  it('a member that leaves the broadcast leaves its rooms', async () => {
    const { mux, port } = await startMux(LINE);
    const [a, b] = await connectAll(mux, port, 2);
    const alice = await joined(mux, a);
    alice.join('blue');
    (await joined(mux, b)).join('blue');
    alice.disconnect();
    await a.waitForClose();
    expect(mux.room('blue').size).toBe(1);
    expect(alice.join('blue')).toBe(false);
  });

  it('keeps rooms and broadcasts of one turn in call order for each receiver', async () => {
    const { mux, port } = await startMux(LINE);
    const [a, b] = await connectAll(mux, port, 2);
    const alice = await joined(mux, a);
    alice.join('blue');
    mux.sendToAll('1\n');
    mux.sendToRoom('blue', '2\n');
    alice.send('3\n');
    mux.sendToRoom('green', 'not for anyone here\n');
    mux.sendToAll('4\n');
    await a.waitForText('4\n');
    await b.waitForText('4\n');
    expect(lines(a)).toEqual(['1', '2', '3', '4']);
    expect(lines(b)).toEqual(['1', '4']);
  });
});

describe('deliver', () => {
  /** Routes each line by its first word: `blue ...` to room blue, `others ...` to all but the sender, ... */
  class Routed extends Multiplexer {
    protected override broadcast(message: Buffer, sender: Client): void {
      const word = message.toString().split(' ')[0];
      const target: Target =
        word === 'blue'
          ? { rooms: ['blue'] }
          : word === 'others'
            ? { except: sender }
            : word === 'nobody'
              ? { rooms: [] }
              : {};
      this.deliver(message, target);
    }
  }

  it('is what broadcast overrides use: rooms, except and the shared fast path', async () => {
    const mux = new Routed({ ...LINE, debugLevel: 'critical' });
    const port = await serve(mux);
    const [a, b, c] = await connectAll(mux, port, 3);
    (await joined(mux, b)).join('blue');
    await a.write('blue room\nothers than me\nnobody at all\neveryone here\n');
    await a.waitForText('everyone here\n');
    await b.waitForText('everyone here\n');
    await c.waitForText('everyone here\n');
    expect(lines(a)).toEqual(['everyone here']);
    expect(lines(b)).toEqual(['blue room', 'others than me', 'everyone here']);
    expect(lines(c)).toEqual(['others than me', 'everyone here']);
  });
});

describe('addForwardFilter', () => {
  it('runs per receiver: undefined keeps the shared bytes, a string or Buffer replaces them, null or false skips', async () => {
    const { mux, port } = await startMux<{ name: string }>(LINE, (m) => {
      m.addForwardFilter((message, receiver) => {
        if (receiver.state.name === 'keep') return undefined;
        if (receiver.state.name === 'skip') return null;
        if (receiver.state.name === 'false') return false;
        if (receiver.state.name === 'buffer') return Buffer.from(`<${message.toString().trim()}>\n`);
        return `${receiver.state.name}: ${message.toString()}`;
      });
    });
    const clients = await connectAll(mux, port, 6);
    const names = ['sender', 'keep', 'skip', 'false', 'buffer', 'text'];
    for (const [i, client] of clients.entries()) (await joined(mux, client)).state.name = names[i];
    await clients[0].write('hi\n');
    await clients[1].waitForText('hi\n');
    await clients[4].waitForText('<hi>\n');
    await clients[5].waitForText('text: hi\n');
    await delay(30);
    expect(clients.map((client) => client.text)).toEqual(['', 'hi\n', '', '', '<hi>\n', 'text: hi\n']);
  });

  it('runs filters in registration order, each on the previous result, and sees server sends with a null sender', async () => {
    const seen: Array<string | null> = [];
    const { mux, port } = await startMux(LINE, (m) => {
      m.addForwardFilter((message, _receiver, sender) => {
        seen.push(sender === null ? null : String(sender.id));
        return `1${message.toString()}`;
      });
      m.addForwardFilter((message) => `2${message.toString()}`);
    });
    const [a, b] = await connectAll(mux, port, 2);
    const alice = await joined(mux, a);
    await a.write('x\n');
    await b.waitForText('21x\n');
    mux.sendToAll('y\n');
    await a.waitForText('21y\n');
    await b.waitForText('21y\n');
    expect(seen).toEqual([String(alice.id), null, null]);
  });

  it('contains a filter that throws: reported, the shared bytes go (filterErrors pass) or nothing does (drop)', async () => {
    for (const filterErrors of ['pass', 'drop'] as const) {
      const errors: string[] = [];
      const { mux, port } = await startMux({ ...LINE, filterErrors }, (m) => {
        m.addForwardFilter(() => {
          throw new Error('forward broke');
        });
        m.on('error', (error, context) => errors.push(`${context.source}: ${error.message}`));
      });
      const [a, b] = await connectAll(mux, port, 2);
      await a.write('z\n');
      await delay(50);
      await a.write('end\n');
      await delay(50);
      expect(b.text).toBe(filterErrors === 'pass' ? 'z\nend\n' : '');
      expect(errors).toEqual(['forwardFilter: forward broke', 'forwardFilter: forward broke']);
      expect(mux.stats().filterErrors).toBe(2);
    }
  });

  it('reaches every delivery when a subclass overrides forwardFilter, and super keeps the chain', async () => {
    const calls: string[] = [];
    class Muting extends Multiplexer<{ muted?: boolean }> {
      override forwardFilter(
        message: Buffer,
        receiver: Client<{ muted?: boolean }>,
        sender: Parameters<Multiplexer['forwardFilter']>[2],
      ) {
        calls.push(message.toString().trim());
        if (receiver.state.muted === true) return null;
        return super.forwardFilter(message, receiver, sender);
      }
    }
    const mux = new Muting({ ...LINE, debugLevel: 'critical' });
    mux.addForwardFilter((message) => `!${message.toString()}`);
    const port = await serve(mux);
    const [a, b, c] = await connectAll(mux, port, 3);
    (await joined(mux, c)).state.muted = true;
    mux.sendToAll('all\n');
    await a.waitForText('!all\n');
    await b.waitForText('!all\n');
    await delay(30);
    expect(c.text).toBe('');
    expect(calls).toEqual(['all', 'all', 'all']);
  });
});
