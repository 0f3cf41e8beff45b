/**
 * The CLI with WebSocket clients, from outside: `--ws-port` next to the TCP port, text frames without the
 * newline to WebSocket clients and lines with one to TCP clients, never echoed unless --send-to-origin;
 * binary frames in raw framing; the --ws-* flags.
 */
import { delay, TestClient, waitFor } from './helpers/net';
import { runCli, startCli, type CliProcess } from './helpers/process';
import { WsTestClient } from './helpers/ws';

/** The WebSocket URL from the CLI's listening line. */
function wsUrlOf(cli: CliProcess): string {
  const match = /(wss?:\/\/\S+)/.exec(cli.banner);
  if (match === null) throw new Error(`no WebSocket address in ${JSON.stringify(cli.banner)}`);
  return match[1];
}

/** Waits until the TCP client and the WebSocket clients are in the broadcast (a probe from the TCP one). */
async function joinedAll(tcp: TestClient, clients: WsTestClient[], line: boolean): Promise<void> {
  let n = 0;
  await waitFor(
    () => {
      if (n > 0 && clients.every((client) => client.messages.length > 0)) return true;
      n += 1;
      tcp.socket.write(line ? `probe${n}\n` : `probe${n}`);
      return false;
    },
    'every client to join',
    10_000,
  );
  await delay(50);
  for (const client of clients) client.messages.length = 0;
}

describe('multiplexer CLI with --ws-port', () => {
  it('listens for TCP and WebSocket clients at once, and names both in its one listening line', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--ws-port', '0', '--framing', 'line']);
    expect(cli.banner).toMatch(
      /^multiplexer listening on 127\.0\.0\.1:\d+ and ws:\/\/127\.0\.0\.1:\d+\/ \(line framing\)$/,
    );
    const tcp = await TestClient.connect(cli.port);
    const ws = await WsTestClient.connect(wsUrlOf(cli));
    const other = await WsTestClient.connect(wsUrlOf(cli));
    await joinedAll(tcp, [ws, other], true);

    await tcp.write('typed in nc\n');
    await ws.waitForText('typed in nc');
    await other.waitForText('typed in nc');
    expect(ws.messages.map((m) => m.binary)).toEqual([false]);
    tcp.chunks.length = 0;
    await ws.send('from the browser');
    await tcp.waitForText('from the browser\n');
    await other.waitForText('from the browser');
    await delay(100);
    expect(ws.texts).toEqual(['typed in nc']);
    expect(tcp.text).toBe('from the browser\n');
  });

  it('echoes to the sender with --send-to-origin', async () => {
    const cli = await startCli([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--ws-port',
      '0',
      '--framing',
      'line',
      '--send-to-origin',
    ]);
    const tcp = await TestClient.connect(cli.port);
    const ws = await WsTestClient.connect(wsUrlOf(cli));
    await joinedAll(tcp, [ws], true);
    await ws.send('mine');
    await ws.waitForText('mine');
    await tcp.waitForText('mine\n');
  });

  it('sends binary frames in raw framing, payload as is', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--ws-port', '0']);
    const tcp = await TestClient.connect(cli.port);
    const ws = await WsTestClient.connect(wsUrlOf(cli));
    await joinedAll(tcp, [ws], false);
    const bytes = Buffer.from([0x00, 0xff, 0x0a, 0x41]);
    await tcp.write(bytes);
    await ws.waitForMessages(1);
    expect(ws.messages[0]).toEqual({ data: bytes, binary: true });
    tcp.chunks.length = 0;
    tcp.received = 0;
    await ws.send(Buffer.from([1, 2, 3]), true);
    await tcp.waitForBytes(3);
    expect([...tcp.data]).toEqual([1, 2, 3]);
  });

  it('takes --ws-path, --ws-origin, --ws-ping-interval and --ws-compression', async () => {
    const cli = await startCli([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--ws-port',
      '0',
      '--ws-path',
      '/chat',
      '--ws-origin',
      'https://a.example',
      '--ws-origin',
      'https://b.example',
      '--ws-ping-interval',
      '100',
      '--ws-compression',
    ]);
    const url = wsUrlOf(cli);
    expect(url).toMatch(/\/chat$/);
    expect(await WsTestClient.refused(url.replace('/chat', '/'))).toBe(404);
    expect(await WsTestClient.refused(url, { origin: 'https://c.example' })).toBe(403);
    const b = await WsTestClient.connect(url, { origin: 'https://b.example', perMessageDeflate: true });
    expect(b.ws.extensions).toContain('permessage-deflate');
    await waitFor(() => b.pings >= 2, 'pings every 100 ms');
  });

  it('rejects --ws-* flags without --ws-port, and a bad --ws-port, with usage and exit 2', async () => {
    for (const args of [
      ['--ws-path', '/x'],
      ['--ws-compression'],
      ['--ws-port', 'x'],
      ['--ws-port', '1', '--ws-path', 'x'],
    ]) {
      const run = runCli(['--port', '0', ...args]);
      expect(await run.exited).toBe(2);
      expect(run.stderr()).toContain('Usage');
    }
  });

  it('exits 1 when the WebSocket port is taken', async () => {
    const first = await startCli(['--host', '127.0.0.1', '--port', '0', '--ws-port', '0']);
    const taken = Number(/:(\d+)\/?\s/.exec(wsUrlOf(first) + ' ')?.[1]);
    const run = runCli(['--host', '127.0.0.1', '--port', '0', '--ws-port', String(taken)]);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain('address already in use');
  });
});
