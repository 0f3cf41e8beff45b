import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tls from 'node:tls';
import { Multiplexer } from '../lib';
import { delay, onTeardown, startMux, TestClient, waitFor } from './helpers/net';
import { expectWhole, fdCount, floodPeer, RssSampler, runCli, startCli } from './helpers/process';
import { afterProbes, randomBytes, untilEveryoneHears, within } from './helpers/streams';

const CERT_PATH = join(__dirname, 'fixtures', 'test-cert.pem');
const KEY_PATH = join(__dirname, 'fixtures', 'test-key.pem');
const cert = readFileSync(CERT_PATH);
const key = readFileSync(KEY_PATH);
/** Client options that trust the test certificate. */
const trusting: tls.ConnectionOptions = { ca: cert, servername: 'localhost' };
const TLS_FLAGS = ['--tls-cert', CERT_PATH, '--tls-key', KEY_PATH];
const MiB = 1024 * 1024;

describe('TLS', () => {
  it('serves a TCP, a TLS (options of its own) and a Unix listener as one broadcast', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical', framing: 'line' });
    onTeardown(() => mux.destroy({ timeout: 200 }));
    const plain = await mux.listen({ port: 0, host: '127.0.0.1' });
    const secure = await mux.listen({ port: 0, host: '127.0.0.1', tls: { key, cert } });
    const dir = mkdtempSync(join(tmpdir(), 'mux-'));
    onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = await mux.listen(join(dir, 'mux.sock'));
    expect(mux.addresses()).toEqual([plain, secure, path]);
    expect(mux.address()).toEqual(plain);
    const tcp = await TestClient.connect(plain.port);
    const overTls = await TestClient.connect(secure.port, { tls: trusting });
    const unix = await TestClient.connect(0, { path });
    await waitFor(() => mux.clients.size === 3, 'all three to join');
    expect([...mux.clients].map((client) => client.transport).sort()).toEqual(['tcp', 'tls', 'unix']);
    await tcp.write('from tcp\n');
    await overTls.write('from tls\n');
    await unix.write('from unix\n');
    await waitFor(
      () => [tcp, overTls, unix].every((client) => client.text.split('\n').length === 3),
      'each to hear the other two',
    );
    expect(tcp.text).toContain('from tls\n');
    expect(tcp.text).toContain('from unix\n');
    expect(overTls.text).toContain('from tcp\n');
    expect(unix.text).toContain('from tls\n');
    // The constructor's TLS is the default of listeners that do not say, and `tls: false` opts out.
    const defaulted = new Multiplexer({ debugLevel: 'critical', tls: { key, cert } });
    onTeardown(() => defaulted.destroy({ timeout: 200 }));
    const defaultedTls = await defaulted.listen({ port: 0, host: '127.0.0.1' });
    const optedOut = await defaulted.listen({ port: 0, host: '127.0.0.1', tls: false });
    await TestClient.connect(defaultedTls.port, { tls: trusting });
    await TestClient.connect(optedOut.port);
    await waitFor(() => defaulted.clients.size === 2, 'a TLS and a plain client');
    expect([...defaulted.clients].map((client) => client.transport).sort()).toEqual(['tcp', 'tls']);
  });

  it('broadcasts byte for byte over TLS', async () => {
    const { mux, port } = await startMux({ tls: { key, cert } });
    const [sender, ...receivers] = await Promise.all([0, 1, 2].map(() => TestClient.connect(port, { tls: trusting })));
    await waitFor(() => mux.clients.size === 3, 'three TLS clients to join');
    const payload = randomBytes(4 * MiB, 0x5eed);
    await sender.write(payload);
    for (const receiver of receivers) {
      await receiver.waitForBytes(payload.length, 20_000);
      expect(receiver.data.equals(payload)).toBe(true);
    }
    expect(sender.received).toBe(0);
    expect((sender.socket as tls.TLSSocket).authorized).toBe(true);
  });

  it('closes a plain TCP client cleanly without hurting the TLS clients', async () => {
    const { mux, port } = await startMux({ tls: { key, cert } });
    const [alice, bob] = await Promise.all([0, 1].map(() => TestClient.connect(port, { tls: trusting })));
    await waitFor(() => mux.clients.size === 2, 'two TLS clients to join');

    const plain = await TestClient.connect(port);
    await plain.write('hello in plain text\n').catch(() => undefined);
    await plain.waitForClose(5_000);
    expect(plain.text).not.toContain('hello');

    await alice.write('still fine\n');
    await bob.waitForText('still fine\n');
    expect(bob.text).toBe('still fine\n');
    expect(mux.stats().connections).toBe(2);
    expect(mux.stats().hookErrors).toBe(0);
  });

  it('destroy() resolves promptly although connections failed or ended during the handshake', async () => {
    // Not startMux: its teardown awaits destroy(), which is what is under test here.
    const mux = new Multiplexer({ tls: { key, cert }, debugLevel: 'critical' });
    const address = await mux.listen({ port: 0, host: '127.0.0.1' });
    const port = typeof address === 'string' ? 0 : address.port;
    onTeardown(() => {
      void mux.destroy({ timeout: 0 });
    });
    const alice = await TestClient.connect(port, { tls: trusting });
    await waitFor(() => mux.clients.size === 1, 'a TLS client to join');
    await expect(TestClient.connect(port, { tls: { servername: 'localhost' } })).rejects.toThrow(/self[- ]signed/);
    const plain = await TestClient.connect(port);
    plain.end(); // TCP connect and EOF, no handshake at all
    await delay(200);
    const outcome = await within(
      mux.destroy({ timeout: 200 }).then(() => 'destroyed'),
      3_000,
      'still pending after 3 s',
    );
    expect(outcome).toBe('destroyed');
    await alice.waitForClose();
  }, 20_000);

  // Against the CLI, so that teardown can kill the server whatever becomes of connections still in their
  // handshake (before the fix of 4d7bc6b they were never closed, and destroy() never resolved).
  it('refuses a client that does not trust the certificate, and serves the others (CLI)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', ...TLS_FLAGS]);
    const [alice, bob] = await Promise.all([0, 1].map(() => TestClient.connect(cli.port, { tls: trusting })));
    await untilEveryoneHears(alice, [bob]);
    await expect(TestClient.connect(cli.port, { tls: { servername: 'localhost' } })).rejects.toThrow(/self[- ]signed/);
    await alice.write('ping\n');
    await bob.waitForText('ping\n');
    expect(afterProbes(bob)).toBe('ping\n');
  });

  it('shuts down promptly on SIGTERM although connections ended during the handshake (CLI)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--shutdown-timeout', '200', ...TLS_FLAGS]);
    const alice = await TestClient.connect(cli.port, { tls: trusting });
    await expect(TestClient.connect(cli.port, { tls: { servername: 'localhost' } })).rejects.toThrow(/self[- ]signed/);
    const plain = await TestClient.connect(cli.port);
    plain.end(); // TCP connect and EOF, no handshake at all
    await delay(200);
    cli.child.kill('SIGTERM');
    const outcome = await within(cli.exited, 5_000, 'still running');
    expect(outcome).toBe(0);
    await alice.waitForClose();
  }, 20_000);

  it('closes a connection that never finishes its handshake after handshakeTimeout', async () => {
    const { mux, port } = await startMux({ tls: { key, cert, handshakeTimeout: 300 } });
    const alice = await TestClient.connect(port, { tls: trusting });
    await waitFor(() => mux.clients.size === 1, 'a TLS client to join');
    const start = Date.now();
    const silent = await TestClient.connect(port);
    await silent.write(Buffer.from([0x16, 0x03, 0x01])); // the first bytes of a ClientHello, then nothing
    await silent.waitForClose(5_000);
    expect(Date.now() - start).toBeGreaterThanOrEqual(250);
    expect(alice.closed).toBe(false);
    expect(mux.stats().connections).toBe(1);
  });

  it('closes the descriptors of connections that give up during the handshake (CLI)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', ...TLS_FLAGS]);
    const probe = await TestClient.connect(cli.port, { tls: trusting });
    await delay(100);
    const before = fdCount(cli.pid);
    for (let i = 0; i < 10; i += 1) {
      await expect(TestClient.connect(cli.port, { tls: { servername: 'localhost' } })).rejects.toThrow(
        /self[- ]signed/,
      );
      const plain = await TestClient.connect(cli.port);
      plain.end(); // TCP connect and EOF, no handshake at all
    }
    await waitFor(
      () => fdCount(cli.pid) <= before,
      `CLI descriptors back to ${before} (have ${fdCount(cli.pid)})`,
      5_000,
    );
    expect(probe.closed).toBe(false);
  }, 20_000);

  it('applies --max-connections-per-address to TLS connections that never handshake', async () => {
    const cli = await startCli([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      ...TLS_FLAGS,
      '--max-connections-per-address',
      '2',
    ]);
    const silent = await Promise.all(Array.from({ length: 10 }, () => TestClient.connect(cli.port)));
    // Excess connections are closed at once (issue 3); at most 2 may stay open from this address.
    await waitFor(
      () => silent.filter((client) => !client.closed && !client.ended).length <= 2,
      'the excess connections to be closed',
      3_000,
    );
  }, 20_000);

  it('listens with TLS from the CLI (--tls-cert, --tls-key)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', ...TLS_FLAGS]);
    expect(cli.banner).toContain('tls://');
    const [alice, bob, carol] = await Promise.all([0, 1, 2].map(() => TestClient.connect(cli.port, { tls: trusting })));
    const plain = await TestClient.connect(cli.port);
    await plain.write('plain\n').catch(() => undefined);
    await plain.waitForClose(5_000);
    await untilEveryoneHears(alice, [bob, carol]);
    await alice.write('hello over tls\n');
    await bob.waitForText('hello over tls\n');
    await carol.waitForText('hello over tls\n');
    expect(afterProbes(bob)).toBe('hello over tls\n');
    expect(alice.received).toBe(0);
    expect(cli.child.exitCode).toBeNull();
  });

  it('disconnects a stalled TLS reader under a flood while TLS receivers get every byte (CLI)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', ...TLS_FLAGS]);
    const rss = new RssSampler(cli.pid, 20);
    const peer = floodPeer(cli.port, { receivers: 4, totalBytes: 48 * MiB, tlsCa: cert.toString(), timeoutMs: 60_000 });
    const flooded = await peer.next('flooded', 90_000);
    const peak = rss.stop();
    console.log(
      `TLS flood: 48 MiB to 4 receivers in ${flooded.floodMs} ms; CLI peak RSS ${(peak / MiB).toFixed(1)} MiB`,
    );
    expect(flooded.timedOut).toBe(false);
    expectWhole(flooded.healthy, 48 * MiB);
    expect(peak).toBeLessThan(256 * MiB);
    peer.send({ cmd: 'resume-stalled', settleMs: 5_000, timeoutMs: 10_000 });
    const [stalled] = (await peer.next('stalled', 15_000)).stalled;
    expect(stalled.closed).toBe(true);
    expect(stalled.errorAt).toBeNull();
    expect(stalled.received).toBeLessThan(48 * MiB);
    peer.send({ cmd: 'exit' });
    await peer.exited;
  }, 120_000);

  it('exits 2 with a message when the TLS files cannot be read, or only one is given', async () => {
    const missing = runCli([
      '--port',
      '0',
      '--tls-cert',
      join(__dirname, 'fixtures', 'no-such-cert.pem'),
      '--tls-key',
      KEY_PATH,
    ]);
    expect(await missing.exited).toBe(2);
    expect(missing.stderr()).toMatch(/TLS/);
    const half = runCli(['--port', '0', '--tls-cert', CERT_PATH]);
    expect(await half.exited).toBe(2);
    expect(half.stderr()).toMatch(/--tls-key/);
  });
});
