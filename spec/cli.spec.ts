import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { ROOT } from './helpers/build';
import { delay, onTeardown, TestClient, waitFor } from './helpers/net';
import { runCli, startCli } from './helpers/process';

/** Resolves with the exit code, or fails after `ms`. */
function exitWithin(exited: Promise<number | null>, ms = 10_000): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the CLI did not exit within ${ms} ms`)), ms);
    void exited.then((code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/**
 * Connects `count` clients and waits until the CLI has admitted them all: the CLI gives no signal when a
 * client joined, so the first one sends numbered probes until every other one got the latest, then what
 * they received is forgotten.
 */
async function connectJoined(
  port: number,
  count: number,
  options: { line?: boolean; echo?: boolean } = {},
): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < count; i += 1) clients.push(await TestClient.connect(port));
  const [sender, ...others] = clients;
  const waiting = options.echo === true ? clients : others;
  const probe = (n: number): string => `probe${n}${options.line === true ? '\n' : ''}`;
  let sent = 0;
  let polls = 0;
  await waitFor(
    () => {
      if (sent > 0 && waiting.every((client) => client.text.includes(probe(sent)))) return true;
      if (polls % 20 === 0) {
        sent += 1;
        sender.socket.write(probe(sent));
      }
      polls += 1;
      return false;
    },
    'every client to join',
    10_000,
  );
  for (const client of clients) {
    client.chunks.length = 0;
    client.received = 0;
  }
  return clients;
}

describe('multiplexer CLI', () => {
  it('prints one line containing listening and the address when ready', async () => {
    const cli = await startCli(['--port', '0', '--host', '127.0.0.1']);
    expect(cli.banner).toContain('listening');
    expect(cli.banner).toContain(`127.0.0.1:${cli.port}`);
    expect(cli.port).toBeGreaterThan(0);
    await delay(50);
    expect(
      cli
        .stdout()
        .split('\n')
        .filter((line) => line !== ''),
    ).toEqual([cli.banner]);
  });

  it('listens on all interfaces when no host is given', async () => {
    const cli = await startCli(['--port', '0']);
    expect(cli.banner).toContain('listening');
    const client = await TestClient.connect(cli.port);
    expect(client.closed).toBe(false);
  });

  it('broadcasts what one client sends to the others, not back to the sender', async () => {
    const cli = await startCli(['--port', '0', '--host', '127.0.0.1']);
    const [alice, bob, carol] = await connectJoined(cli.port, 3);
    await alice.write('hello everyone');
    await bob.waitForText('hello everyone');
    await carol.waitForText('hello everyone');
    await delay(50);
    expect(alice.received).toBe(0);
  });

  it('delivers binary data byte for byte in raw framing', async () => {
    const cli = await startCli(['--port', '0', '--host', '127.0.0.1']);
    const [alice, bob] = await connectJoined(cli.port, 2);
    const payload = randomBytes(2 * 1024 * 1024);
    await alice.write(payload);
    await bob.waitForBytes(payload.length, 15_000);
    expect(bob.data.equals(payload)).toBe(true);
  });

  it('echoes to the sender too with --send-to-origin', async () => {
    const cli = await startCli(['--port', '0', '--host', '127.0.0.1', '--send-to-origin']);
    const [alice, bob] = await connectJoined(cli.port, 2, { echo: true });
    await alice.write('echo me');
    await alice.waitForText('echo me');
    await bob.waitForText('echo me');
  });

  it('sends whole lines only with --framing line', async () => {
    const cli = await startCli(['--port', '0', '--host', '127.0.0.1', '--framing', 'line']);
    expect(cli.banner).toContain('line');
    const [alice, bob] = await connectJoined(cli.port, 2, { line: true });
    await alice.write('half a ');
    await delay(100);
    expect(bob.received).toBe(0);
    await alice.write('line\n');
    await bob.waitForText('half a line\n');
    expect(bob.text).toBe('half a line\n');
  });

  it('accepts --debug-level', async () => {
    const cli = await startCli(['--port', '0', '--host', '127.0.0.1', '--debug-level', 'error']);
    expect(cli.banner).toContain('listening');
  });

  it('prints usage and exits 0 with --help', async () => {
    const cli = runCli(['--help']);
    expect(await exitWithin(cli.exited)).toBe(0);
    expect(cli.stdout()).toContain('Usage');
    for (const flag of ['--port', '--host', '--send-to-origin', '--framing', '--debug-level', '--help', '--version']) {
      expect(cli.stdout()).toContain(flag);
    }
  });

  it('prints the package version and exits 0 with --version', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const cli = runCli(['--version']);
    expect(await exitWithin(cli.exited)).toBe(0);
    expect(cli.stdout().trim()).toBe(version);
  });

  it('rejects an unknown flag with usage and exit code 2', async () => {
    const cli = runCli(['--bogus']);
    expect(await exitWithin(cli.exited)).toBe(2);
    expect(cli.stderr()).toContain('bogus');
    expect(cli.stderr()).toContain('Usage');
    expect(cli.stdout()).not.toContain('listening');
  });

  it.each([
    [
      ['--slow-consumer', 'nope'],
      ['nope', 'drop-newest'],
    ],
    [
      ['--debug-level', 'loud'],
      ['loud', 'critical'],
    ],
    [['--port', 'abc'], ['abc']],
    [['--port', '70000'], ['70000']],
    [
      ['--framing', 'xml'],
      ['xml', 'line'],
    ],
    [
      ['--max-clients', 'lots'],
      ['lots', 'integer'],
    ],
    [['--max-clients=-3'], ['-3', 'integer']],
  ])('rejects the bad value %j with a message, usage and exit code 2', async (args, words) => {
    const cli = runCli(args);
    expect(await exitWithin(cli.exited)).toBe(2);
    for (const word of words) expect(cli.stderr()).toContain(word);
    expect(cli.stderr()).toContain('Usage');
  });

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'exits 0 on %s sent the moment it prints its ready line, as a supervisor may',
    async (signal) => {
      // The window between the ready line and the signal handlers is short: several runs make it show.
      const outcomes: Array<{ code: number | null; killedBy: NodeJS.Signals | null }> = [];
      for (let run = 0; run < 8; run += 1) {
        const cli = runCli(['--port', '0', '--host', '127.0.0.1']);
        cli.child.stdout?.on('data', () => {
          if (cli.stdout().includes('listening') && cli.stdout().endsWith('\n') && cli.child.signalCode === null)
            cli.child.kill(signal);
        });
        const code = await exitWithin(cli.exited);
        outcomes.push({ code, killedBy: cli.child.signalCode });
      }
      expect(outcomes).toEqual(Array.from({ length: 8 }, () => ({ code: 0, killedBy: null })));
    },
  );

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'shuts down cleanly on %s while serving, letting clients take what is queued',
    async (signal) => {
      const cli = await startCli(['--port', '0', '--host', '127.0.0.1']);
      const [alice, bob] = await connectJoined(cli.port, 2);
      await alice.write('before shutdown');
      await bob.waitForText('before shutdown');
      cli.child.kill(signal);
      expect(await exitWithin(cli.exited)).toBe(0);
      expect(cli.stderr()).toContain(signal);
      await alice.waitForClose();
      await bob.waitForClose();
    },
  );

  it('exits non-zero with a clear message when the port is in use', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    onTeardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const { port } = blocker.address() as net.AddressInfo;
    const cli = runCli(['--port', String(port), '--host', '127.0.0.1']);
    const code = await exitWithin(cli.exited);
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(cli.stderr()).toMatch(/in use|EADDRINUSE/);
    expect(cli.stderr()).toContain(String(port));
    expect(cli.stdout()).not.toContain('listening');
  });

  it('runs two instances side by side, isolated', async () => {
    const [first, second] = await Promise.all([
      startCli(['--port', '0', '--host', '127.0.0.1']),
      startCli(['--port', '0', '--host', '127.0.0.1']),
    ]);
    expect(first.port).not.toBe(second.port);
    const [a1, a2] = await connectJoined(first.port, 2);
    const [b1, b2] = await connectJoined(second.port, 2);
    await a1.write('to first');
    await b1.write('to second');
    await a2.waitForText('to first');
    await b2.waitForText('to second');
    await delay(50);
    expect(a2.text).toBe('to first');
    expect(b2.text).toBe('to second');
    first.child.kill('SIGTERM');
    expect(await exitWithin(first.exited)).toBe(0);
    await b1.write(' again');
    await b2.waitForText('to second again');
  });
});
