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

  it('sends what a listener broadcasts while the turn is being given out after that turn', async () => {
    // Under a drop policy the first drop is reported with a 'limit' event, fired from inside the fan-out.
    const { mux, port } = await startMux({ slowConsumer: 'drop-newest', maxQueuedBytes: 64 * 1024, highWaterMark: 16 * 1024 });
    const [alice, bob] = await connectAll(mux, port, 2);
    const [aliceOnServer, bobOnServer] = [serverSideOf(mux, alice), serverSideOf(mux, bob)];
    mux.on('limit', (client, kind) => {
      if (kind === 'slow-consumer') mux.sendToAll(`dropping for ${client.id}\n`, client);
    });
    mux.sendToAll('a\n');
    mux.sendToAll(Buffer.alloc(100 * 1024, 'z'), aliceOnServer); // more than bob may have queued: dropped
    mux.sendToAll('b\n');
    await alice.waitForText('dropping');
    mux.sendToAll('c\n');
    await alice.waitForText('c\n');
    await bob.waitForText('c\n');
    expect(alice.text).toBe(`a\nb\ndropping for ${bobOnServer.id}\nc\n`);
    expect(bob.text).toBe('a\nb\nc\n');
    expect(bobOnServer.drops).toBe(1);
  });
});
