import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as accessControl from '../examples/access-control';
import * as chat from '../examples/chat';
import * as events from '../examples/events';
import * as rooms from '../examples/rooms';
import * as webChat from '../examples/web-chat';
import { buildExamples, ExampleProcess, say, started } from './helpers/examples';
import { onTeardown, TestClient, waitFor } from './helpers/net';
import { connectFrom } from './helpers/streams';
import { MemoryHub } from '../lib';
import { WsTestClient } from './helpers/ws';

const LOCAL = { port: 0, host: '127.0.0.1' };

/** The name a chat newcomer is greeted with, read from its welcome line. */
async function guestName(client: TestClient): Promise<string> {
  await client.waitForText('welcome');
  const match = /welcome, (\S+)!/.exec(client.text);
  if (match === null) throw new Error(`no name in ${JSON.stringify(client.text)}`);
  return match[1];
}

describe('examples/chat', () => {
  it('takes the nick from the first line, prefixes later lines with it, and announces joins and leaves', async () => {
    const { port } = await started(chat.start(LOCAL));
    const alice = await TestClient.connect(port);
    await guestName(alice);
    await say(alice, 'alice', alice, '* you are alice\n');

    const bob = await TestClient.connect(port);
    const bobGuest = await guestName(bob);
    await alice.waitForText(`* ${bobGuest} joined\n`);
    await say(bob, 'bob', alice, `* ${bobGuest} is now bob\n`);

    await say(alice, 'hello', bob, 'alice: hello\n');
    await say(bob, 'hi alice', alice, 'bob: hi alice\n');
    // bob's line came after alice's own, on the same server: an echo of hers would have arrived first.
    expect(alice.text).not.toContain('alice: hello');
    // The nick lines were swallowed, not broadcast.
    expect(alice.text).not.toMatch(/^bob$/m);

    bob.end();
    await alice.waitForText('* bob left (eof)\n');
  });

  it('refuses a nick that is taken and announces a user who left before choosing one by its guest name', async () => {
    const { port } = await started(chat.start(LOCAL));
    const alice = await TestClient.connect(port);
    await guestName(alice);
    await say(alice, 'alice', alice, '* you are alice\n');

    const impostor = await TestClient.connect(port);
    const guest = await guestName(impostor);
    await say(impostor, 'alice', impostor, 'cannot be your nick');
    impostor.end();
    await alice.waitForText(`* ${guest} left (eof)\n`);
    expect(alice.text).not.toContain(`${guest} is now`);
  });

  it('acts as one chat over a bus: lines, announcements and unique nicks across two servers', async () => {
    const hub = new MemoryHub();
    const one = await started(chat.start({ ...LOCAL, bus: hub.bus('chat') }));
    const two = await started(chat.start({ ...LOCAL, bus: hub.bus('chat') }));
    const alice = await TestClient.connect(one.port);
    await guestName(alice);
    await say(alice, 'alice', alice, '* you are alice\n');
    const bob = await TestClient.connect(two.port);
    const bobGuest = await guestName(bob);
    await alice.waitForText(`* ${bobGuest} joined\n`);
    await waitFor(
      () => two.mux.members().some((member) => member.state.nick === 'alice'),
      "alice's nick on server two",
    );
    await say(bob, 'alice', bob, 'cannot be your nick'); // taken on the other server
    await say(bob, 'bob', alice, `* ${bobGuest} is now bob\n`);
    await say(alice, 'hello from one', bob, 'alice: hello from one\n');
    await say(bob, 'hello from two', alice, 'bob: hello from two\n');
    bob.end();
    await alice.waitForText('* bob left (eof)\n');
  });
});

describe('examples/access-control', () => {
  it('lets allowed addresses join, refuses denied and banned ones, and logs every refusal', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mux-access-'));
    onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const bannedFile = join(dir, 'banned.txt');
    writeFileSync(bannedFile, '# banned for spamming\n127.0.0.3\n');
    const lines: string[] = [];
    const logged =
      (text: string): (() => boolean) =>
      () =>
        lines.some((line) => line.includes(text));
    const { mux, port } = await started(
      accessControl.start({
        ...LOCAL,
        allow: ['127.0.0.0/8'],
        deny: ['127.0.0.2'],
        bannedFile,
        log: (line) => lines.push(line),
      }),
    );

    const alice = await connectFrom(port, '127.0.0.1');
    const bob = await connectFrom(port, '127.0.0.1');
    await waitFor(() => mux.clients.size === 2, 'two allowed clients to join');

    const denied = await connectFrom(port, '127.0.0.2');
    await denied.waitForClose();
    await waitFor(logged('denied 127.0.0.2'), 'the deny-list refusal to be logged');

    const banned = await connectFrom(port, '127.0.0.3');
    await banned.write('sent while the ban file is read\n').catch(() => undefined);
    await banned.waitForClose();
    await waitFor(logged('denied 127.0.0.3'), 'the ban-file refusal to be logged');
    expect(lines).toContain(`127.0.0.3 is listed in ${bannedFile}`);

    // Allowed clients still talk; nothing from the refused ones reached them.
    await say(alice, 'hello', bob, 'hello\n');
    expect(bob.text).toBe('hello\n');
    expect(mux.stats().denials['access-filter']).toBe(2);

    // The ban file is read at every connection: lifting the ban needs no restart.
    writeFileSync(bannedFile, '');
    // What it sends while the ban file is read waits for the decision, and is not lost.
    const forgiven = await connectFrom(port, '127.0.0.3');
    await say(forgiven, 'thanks', alice, 'thanks\n');
    expect(mux.clients.size).toBe(3);
  });

  it('refuses a client whose address is not on the allow list', async () => {
    const lines: string[] = [];
    const { mux, port } = await started(
      accessControl.start({ ...LOCAL, allow: ['::1'], log: (line) => lines.push(line) }),
    );
    const stranger = await TestClient.connect(port);
    await stranger.waitForClose();
    await waitFor(() => lines.some((line) => line.startsWith('denied 127.0.0.1')), 'the refusal to be logged');
    expect(mux.clients.size).toBe(0);
  });
});

describe('examples/rooms', () => {
  async function joinAs(port: number, nick: string): Promise<TestClient> {
    const client = await TestClient.connect(port);
    await client.waitForText('in #lobby');
    await say(client, `/nick ${nick}`, client, `is now ${nick}\n`);
    return client;
  }

  it('delivers a line only to the clients in the sender room', async () => {
    const { port } = await started(rooms.start(LOCAL));
    const alice = await joinAs(port, 'alice');
    const bob = await joinAs(port, 'bob');
    const carol = await joinAs(port, 'carol');
    const dave = await joinAs(port, 'dave');
    await say(carol, '/join games', carol, '* carol joined #games\n');
    await say(dave, '/join #games', carol, '* dave joined #games\n');

    await say(alice, 'hello lobby', bob, 'alice: hello lobby\n');
    await say(carol, 'hello games', dave, 'carol: hello games\n');
    // Each of these came after the line it must not have seen, from the same sender.
    await say(alice, '/msg carol still there?', carol, '* alice whispers: still there?\n');
    await say(carol, '/msg bob yes', bob, '* carol whispers: yes\n');
    expect(carol.text).not.toContain('hello lobby');
    expect(bob.text).not.toContain('hello games');
    expect(alice.text).not.toContain('alice: hello lobby');
  });

  it('keeps a per-user mute list with a forward filter', async () => {
    const { port } = await started(rooms.start(LOCAL));
    const alice = await joinAs(port, 'alice');
    const bob = await joinAs(port, 'bob');
    const carol = await joinAs(port, 'carol');
    await say(carol, '/mute alice', carol, '* muted alice\n');
    await say(alice, 'can you hear me?', bob, 'alice: can you hear me?\n');
    await say(bob, 'I can', carol, 'bob: I can\n');
    await say(carol, '/unmute alice', carol, '* unmuted alice\n');
    await say(alice, 'and now?', carol, 'alice: and now?\n');
    expect(carol.text).not.toContain('can you hear me?');
  });

  it('handles commands in filter() and never broadcasts them', async () => {
    const { port } = await started(rooms.start(LOCAL));
    const alice = await joinAs(port, 'alice');
    const bob = await joinAs(port, 'bob');
    await say(alice, '/msg nobody hi', alice, '* nobody is called nobody\n');
    await say(alice, '/who', alice, '* in #lobby: alice, bob\n');
    await say(alice, '/nick bob', alice, '* bob is taken\n');
    await say(alice, '/dance', alice, '* commands:');
    await say(alice, 'done', bob, 'alice: done\n');
    expect(bob.text).not.toMatch(/^alice: \//m);
    expect(bob.text).not.toContain('whispers');
  });
});

describe('examples/events', () => {
  it('logs listening, connect, data, deny, limit, error, exit, stats and close', async () => {
    const lines: string[] = [];
    const seen = (pattern: RegExp): Promise<void> =>
      waitFor(
        () => lines.some((line) => pattern.test(line)),
        `a log line like ${pattern} (have ${JSON.stringify(lines)})`,
      );
    const { mux, port } = await started(
      events.start({
        ...LOCAL,
        log: (line) => lines.push(line),
        statsInterval: 20,
        settings: {
          framing: 'line',
          maxClients: 2,
          maxMessageBytes: 16,
          lineOverflow: 'discard',
          debugLevel: 'critical',
        },
      }),
    );
    expect(lines).toContain(`listening on 127.0.0.1 port ${port}`);
    // A filter that fails, to see the `error` event; the message still goes through (Tcl's behaviour).
    mux.addFilter((line) => {
      if (line.toString() === 'boom') throw new Error('filter exploded');
      return undefined;
    });

    const alice = await TestClient.connect(port);
    const bob = await TestClient.connect(port);
    await waitFor(() => mux.clients.size === 2, 'two clients to join');
    expect(lines.filter((line) => line.startsWith('connect client')).length).toBe(2);

    const third = await TestClient.connect(port);
    await third.waitForClose();
    await seen(/^deny client \d+ \(127\.0\.0\.1:\d+\): max-clients$/);

    await say(alice, 'hello', bob, 'hello\n');
    await seen(/^data from client \d+ \(127\.0\.0\.1:\d+\): 6 bytes "hello\\n"$/);

    await alice.write('a line longer than sixteen bytes\n');
    await seen(/^limit client \d+ .*: line-too-long$/);

    await say(alice, 'boom', bob, 'boom\n');
    await seen(/^error in filter of client \d+ .*: filter exploded$/);

    bob.end();
    await seen(/^exit client \d+ .*: eof$/);
    await seen(/^stats: 1 clients, 2 messages in/);

    await mux.destroy({ timeout: 200 });
    expect(lines[lines.length - 1]).toBe('close');
  });
});

describe('examples/web-chat', () => {
  it('puts WebSocket and TCP users in one chat: nick first, lines both ways, joins and leaves announced', async () => {
    const { mux, address, webAddress } = await webChat.start(LOCAL);
    onTeardown(() => mux.destroy({ timeout: 200 }));
    const page = await fetch(`http://127.0.0.1:${webAddress.port}/`);
    expect(await page.text()).toContain('<script src="chat.js"');
    const nc = await TestClient.connect(address.port);
    await guestName(nc);
    await say(nc, 'carol', nc, '* you are carol\n');
    const url = `ws://127.0.0.1:${webAddress.port}/chat`;
    const browser = await WsTestClient.connect(url, { origin: `http://localhost:${webAddress.port}` });
    await browser.send('dave');
    await browser.waitForText('* you are dave');
    await nc.waitForText(' is now dave\n');
    await browser.send('hello from the page');
    await nc.waitForText('dave: hello from the page\n');
    await nc.write('hi dave\n');
    await browser.waitForText('carol: hi dave');
    browser.ws.close(1000);
    await nc.waitForText('* dave left (eof)\n');
    expect(await WsTestClient.refused(url, { origin: 'http://evil.example' })).toBe(403);
  });
});

describe('examples as programs', () => {
  const names = ['chat', 'access-control', 'rooms', 'events', 'web-chat'] as const;

  beforeAll(() => buildExamples(names), 180_000);

  it.each(names)('%s prints where it listens, serves clients, and exits 0 on SIGTERM', async (name) => {
    const program = new ExampleProcess(`dist/examples/${name}.js`, [], { PORT: '0', WEB_PORT: '0', DEBUG: '' });
    const port = await program.listeningPort();
    const client = await TestClient.connect(port);
    if (name === 'chat' || name === 'web-chat') await client.waitForText('welcome');
    if (name === 'web-chat') {
      // The page is served from dist/examples too (its files stay in examples/web-chat).
      await waitFor(() => /open http:\/\/localhost:\d+\//.test(program.stdout), 'the page address');
      const pageUrl = /open (http:\/\/localhost:\d+\/)/.exec(program.stdout)![1];
      expect((await fetch(pageUrl)).status).toBe(200);
      expect(await (await fetch(`${pageUrl}chat.js`)).text()).toContain('new WebSocket');
    }
    if (name === 'rooms') await client.waitForText('in #lobby');
    program.kill('SIGTERM');
    await program.exited;
    expect({ code: program.exitCode, signal: program.signal, stderr: program.stderr }).toEqual({
      code: 0,
      signal: null,
      stderr: '',
    });
    await client.waitForClose();
  });

  it('takes the port from its first argument', async () => {
    const program = new ExampleProcess('dist/examples/chat.js', ['0'], { PORT: 'not used', DEBUG: '' });
    await program.listeningPort();
    program.kill('SIGINT');
    await program.exited;
    expect(program.exitCode).toBe(0);
  });
});
