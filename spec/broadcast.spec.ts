import { connectAll, delay, startMux } from './helpers/net';

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
