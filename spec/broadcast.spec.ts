import { ENTRY_OVERHEAD } from '../lib/fanout/outbound-queue';
import { connectAll, delay, startMux } from './helpers/net';
import { serverSideOf } from './helpers/serve';

describe('broadcast', () => {
  it('sends what one client writes to every other client, not back to the sender', async () => {
    const { mux, port } = await startMux();
    const [alice, bob, carol] = await connectAll(mux, port, 3);
    await alice.write('hello\n');
    await bob.waitForText('hello\n');
    await carol.waitForText('hello\n');
    await delay(50);
    expect(alice.received).toBe(0);
  });

  it('echoes to the sender too when sendtoorigin is set', async () => {
    const { mux, port } = await startMux();
    mux.config('sendtoorigin', 1);
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('ping');
    await alice.waitForText('ping');
    await bob.waitForText('ping');
  });
});

// Broadcasts go into a log once per event-loop turn and each receiver takes its share of it; these pin down
// what a receiver sees when broadcasts, direct sends, exceptions and departures meet within one turn.
describe('one turn of broadcasts', () => {
  it('keeps the order of broadcasts and direct sends made in the same turn', async () => {
    const { mux, port } = await startMux();
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = serverSideOf(mux, alice);
    mux.sendToAll('1');
    aliceOnServer.send('2');
    mux.sendToAll('3');
    mux.sendTo(aliceOnServer, '4');
    mux.sendToAll('5');
    await alice.waitForText('12345');
    await bob.waitForText('135');
    await delay(30);
    expect([alice.text, bob.text]).toEqual(['12345', '135']);
  });

  it('leaves out of a receiver exactly the messages it is excepted from, wherever they fall in the turn', async () => {
    const { mux, port } = await startMux();
    const [alice, bob, carol] = await connectAll(mux, port, 3);
    const bobOnServer = serverSideOf(mux, bob);
    const carolOnServer = serverSideOf(mux, carol);
    mux.sendToAll('a', bobOnServer);
    mux.sendToAll('b');
    mux.sendToAll('c', bobOnServer);
    mux.sendToAll('d', carolOnServer);
    mux.sendToAll('e', bobOnServer);
    await alice.waitForText('abcde');
    await bob.waitForText('bd');
    await carol.waitForText('abce');
    await delay(30);
    expect([alice.text, bob.text, carol.text]).toEqual(['abcde', 'bd', 'abce']);
  });

  it('gives a client disconnected in the turn what was broadcast before, and nothing after', async () => {
    const { mux, port } = await startMux();
    const [alice, bob] = await connectAll(mux, port, 2);
    mux.sendToAll('before ');
    serverSideOf(mux, alice).disconnect();
    mux.sendToAll('after');
    await alice.waitForClose();
    await bob.waitForText('before after');
    expect(alice.text).toBe('before ');
  });

  it('delivers a turn larger than the early fan-out threshold whole and in order', async () => {
    const { mux, port } = await startMux();
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = serverSideOf(mux, alice);
    // 4,000 messages of 200 bytes (800 KB, past the 256 KiB at which a turn goes out early), every tenth
    // one not for alice: one turn, several fan-outs, slices on both sides of the exceptions.
    const messages = Array.from({ length: 4000 }, (_, i) => `${String(i).padStart(6, '0')}${'x'.repeat(193)}\n`);
    messages.forEach((message, i) => mux.sendToAll(message, i % 10 === 3 ? aliceOnServer : undefined));
    const forBob = messages.join('');
    const forAlice = messages.filter((_, i) => i % 10 !== 3).join('');
    await bob.waitForBytes(forBob.length, 10_000);
    await alice.waitForBytes(forAlice.length, 10_000);
    expect(bob.text === forBob).toBe(true);
    expect(alice.text === forAlice).toBe(true);
  });

  describe('when a limit listener runs in the middle of giving a turn out', () => {
    // drop-newest with a queue too small for a 100 KiB message: the message is dropped for bob, and the first
    // drop fires 'limit' from inside the fan-out or the catch-up that was queuing it.
    const options = { slowConsumer: 'drop-newest', maxQueuedBytes: 64 * 1024, highWaterMark: 16 * 1024 } as const;
    const tooBig = Buffer.alloc(100 * 1024, 'z');

    it('keeps a direct send from the listener after the earlier broadcasts, each once (catch-up)', async () => {
      const { mux, port } = await startMux(options);
      const [alice, bob] = await connectAll(mux, port, 2);
      const [aliceOnServer, bobOnServer] = [serverSideOf(mux, alice), serverSideOf(mux, bob)];
      mux.on('limit', (client, kind) => {
        if (kind === 'slow-consumer') client.send('warn\n');
      });
      mux.sendToAll('s\n');
      mux.sendToAll(tooBig, aliceOnServer);
      bobOnServer.send('x\n'); // catches bob up: s, then the drop runs the listener
      await bob.waitForText('x\n');
      await delay(30);
      expect(bob.text).toBe('s\nwarn\nx\n');
    });

    it("gives every receiver the listener's broadcast in the same place, and the direct send after it (fan-out)", async () => {
      const { mux, port } = await startMux(options);
      const [alice, bob] = await connectAll(mux, port, 2);
      const [aliceOnServer, bobOnServer] = [serverSideOf(mux, alice), serverSideOf(mux, bob)];
      mux.on('limit', (client, kind) => {
        if (kind !== 'slow-consumer') return;
        mux.sendToAll('notice\n');
        client.send('warn\n');
      });
      mux.sendToAll('a\n');
      mux.sendToAll(tooBig, aliceOnServer); // past the early fan-out threshold: given out, and dropped for bob, at once
      mux.sendToAll('b\n');
      await bob.waitForText('b\n');
      await alice.waitForText('b\n');
      await delay(30);
      // The listener ran inside the second sendToAll, so its broadcast comes before b, for everyone.
      expect([alice.text, bob.text]).toEqual(['a\nnotice\nb\n', 'a\nnotice\nwarn\nb\n']);
      expect(bobOnServer.drops).toBe(1);
    });

    it('loses and repeats nothing when the listener broadcasts past the early fan-out threshold', async () => {
      const { mux, port } = await startMux(options);
      const [alice, bob] = await connectAll(mux, port, 2);
      const [aliceOnServer, bobOnServer] = [serverSideOf(mux, alice), serverSideOf(mux, bob)];
      const long = `n1 ${'.'.repeat(12_000)}\n`; // past the early fan-out threshold of these settings
      mux.on('limit', (client, kind) => {
        if (kind !== 'slow-consumer') return;
        mux.sendToAll(long, client);
        mux.sendToAll('n2\n');
      });
      mux.sendToAll('s\n');
      mux.sendToAll(tooBig, aliceOnServer);
      bobOnServer.send('x\n');
      mux.sendToAll('t\n');
      await alice.waitForText('t\n');
      await bob.waitForText('t\n');
      await delay(30);
      expect(bob.text).toBe('s\nn2\nx\nt\n');
      expect(alice.text).toBe(`s\n${long}n2\nt\n`);
    });
  });

  describe('when a drop-oldest limit listener runs while a share is being queued', () => {
    // Bob's queue is filled to 30 bytes short of maxQueuedBytes by a direct send not yet written; the next
    // broadcast makes room by dropping it, and the 'limit' listener runs from inside the fan-out or catch-up.
    const options = { slowConsumer: 'drop-oldest', maxQueuedBytes: 64 * 1024, highWaterMark: 16 * 1024 } as const;
    const filler = Buffer.alloc(64 * 1024 - ENTRY_OVERHEAD - 30, 'f');

    it('queues the message that made room before what the listener sends (fan-out)', async () => {
      const { mux, port } = await startMux(options);
      const [alice, bob] = await connectAll(mux, port, 2);
      const bobOnServer = serverSideOf(mux, bob);
      mux.on('limit', (client, kind) => {
        if (kind === 'slow-consumer') client.send('warn\n');
      });
      bobOnServer.send(filler);
      mux.sendToAll('m1\n');
      mux.sendToAll('m2\n');
      await alice.waitForText('m2\n');
      await bob.waitForText('warn\n');
      await delay(30);
      expect([alice.text, bob.text]).toEqual(['m1\nm2\n', 'm1\nm2\nwarn\n']);
    });

    it('gives a client the listener disconnects the whole turn, in order', async () => {
      const { mux, port } = await startMux(options);
      const [alice, bob] = await connectAll(mux, port, 2);
      const bobOnServer = serverSideOf(mux, bob);
      mux.on('limit', (client, kind) => {
        if (kind === 'slow-consumer') client.disconnect();
      });
      bobOnServer.send(filler);
      mux.sendToAll('m1\n');
      mux.sendToAll('m2\n');
      await alice.waitForText('m2\n');
      await bob.waitForClose();
      expect([alice.text, bob.text]).toEqual(['m1\nm2\n', 'm1\nm2\n']);
    });

    it("keeps call order when the listener's broadcast makes the log go out early during a catch-up", async () => {
      const { mux, port } = await startMux(options);
      const [alice, bob] = await connectAll(mux, port, 2);
      const bobOnServer = serverSideOf(mux, bob);
      const long = `n ${'.'.repeat(5000)}\n`; // past the early fan-out threshold of these settings (4 KiB)
      mux.on('limit', (_client, kind) => {
        if (kind === 'slow-consumer') mux.sendToAll(long);
      });
      bobOnServer.send(filler);
      mux.sendToAll('m1\n');
      mux.sendToAll('m2\n');
      bobOnServer.send('x\n'); // catches bob up: m1 makes room, the listener broadcasts
      await alice.waitForText(long);
      await bob.waitForText('x\n');
      await delay(30);
      expect(alice.text).toBe(`m1\nm2\n${long}`);
      expect(bob.text.replace(long, 'N\n')).toBe('m1\nm2\nN\nx\n');
    });
  });
});
