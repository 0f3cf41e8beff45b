/**
 * The web chat example (examples/web-chat.ts and its page) in headless chromium, end to end: real pages,
 * the real server, and `nc`-like TCP clients in the same room.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import type { DenyReason } from '../lib';
import { start } from '../examples/web-chat';
import { textOf, useBrowser, waitForText } from './helpers/browser';
import { onTeardown, TestClient, waitFor } from './helpers/net';

type Chat = Awaited<ReturnType<typeof start>>;

/** Stops a running chat: the multiplexer and the page's server, so that its ports can be listened on again. */
async function stop(chat: Chat): Promise<void> {
  const closed = new Promise((resolve) => chat.web.once('close', resolve));
  await chat.mux.destroy({ timeout: 200 });
  if (chat.web.listening) await closed;
}

/** The chat on ephemeral ports of 127.0.0.1 (or the ports given), stopped after the test. */
async function chat(ports: { port?: number; webPort?: number } = {}): Promise<Chat> {
  const started = await start({ host: '127.0.0.1', port: 0, webPort: 0, ...ports });
  onTeardown(() => stop(started));
  return started;
}

/** Joins with `nick` using the keyboard only: focus the nick field by its label, type, Enter. */
async function joinAs(page: Page, nick: string): Promise<void> {
  await page.getByLabel('Your nick').focus();
  await page.keyboard.type(nick);
  await page.keyboard.press('Enter');
}

async function say(page: Page, line: string): Promise<void> {
  await page.getByRole('textbox', { name: 'Message', exact: true }).focus();
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
}

describe('examples/web-chat in a browser', () => {
  const browser = useBrowser();

  it('lets two pages and a TCP client chat in both directions, with joins and leaves announced', async () => {
    const c = await chat();
    const pageUrl = `http://127.0.0.1:${c.webAddress.port}/`;
    const nc = await TestClient.connect(c.address.port);
    await nc.write('carol\n');
    await nc.waitForText('* you are carol\n');

    const alice = await browser.page(pageUrl);
    await joinAs(alice, 'alice');
    await waitForText(alice, '#state', 'Connected as alice.');
    await nc.waitForText(' is now alice\n');

    const bob = await browser.page(pageUrl);
    await joinAs(bob, 'bob');
    await waitForText(bob, '#state', 'Connected as bob.');
    await waitForText(alice, '#log', 'is now bob');

    await say(alice, 'hello bob');
    await waitForText(bob, '#log', 'alice: hello bob');
    await waitForText(alice, '#log', 'alice: hello bob'); // shown by the page itself: the server does not echo
    await nc.waitForText('alice: hello bob\n');
    expect(await alice.inputValue('#message')).toBe('');

    await nc.write('hi from a terminal\n');
    await waitForText(alice, '#log', 'carol: hi from a terminal');
    await waitForText(bob, '#log', 'carol: hi from a terminal');

    await say(bob, 'héllo wörld ✓');
    await nc.waitForText('bob: héllo wörld ✓\n');
    await waitForText(alice, '#log', 'bob: héllo wörld ✓');

    await bob.getByRole('button', { name: 'Leave' }).press('Enter');
    await waitForText(alice, '#log', '* bob left (eof)');
    await nc.waitForText('* bob left (eof)\n');
    await waitForText(bob, '#state', 'Not connected.');
    expect(await bob.getByLabel('Your nick').isVisible()).toBe(true);
  });

  it('refuses a page of a foreign origin: it never opens, and the server says why', async () => {
    const c = await chat();
    const denied: DenyReason[] = [];
    c.mux.on('deny', (_client, reason) => denied.push(reason));
    // Another site (another port is another origin) whose page tries to join the chat.
    const foreign = createServer((_request, response) => {
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      response.end(`<!doctype html><meta charset="utf-8"><title>foreign</title><p id="log">waiting</p><script>
        const ws = new WebSocket('ws://127.0.0.1:${c.webAddress.port}/chat');
        const log = (text) => (document.getElementById('log').textContent += ' ' + text);
        ws.onopen = () => log('open');
        ws.onclose = (event) => log('closed ' + event.code);
      </script>`);
    });
    await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
    onTeardown(() => new Promise<void>((resolve) => foreign.close(() => resolve())));
    const page = await browser.page(`http://127.0.0.1:${(foreign.address() as AddressInfo).port}/`);
    await waitForText(page, '#log', 'closed 1006');
    expect(await textOf(page, '#log')).not.toContain('open');
    await waitFor(() => denied.length === 1, 'the deny event');
    expect(denied).toEqual(['origin']);
    expect(c.mux.clients.size).toBe(0);
  });

  it('shows that it is disconnected when the server goes, then reconnects and sends the nick again', async () => {
    let c = await chat();
    const ports = { port: c.address.port, webPort: c.webAddress.port };
    const page = await browser.page(`http://127.0.0.1:${ports.webPort}/`);
    await joinAs(page, 'dave');
    await waitForText(page, '#state', 'Connected as dave.');

    await stop(c);
    await waitForText(page, '#state', /Disconnected, reconnecting\s+in \d+ s/);
    expect(await page.getByRole('button', { name: 'Send' }).isDisabled()).toBe(true);

    c = await chat(ports);
    const nc = await TestClient.connect(c.address.port);
    await waitForText(page, '#state', 'Connected as dave.', 30_000);
    await nc.waitForText(' is now dave\n'); // the nick was the first line on the new connection
    await say(page, 'back again');
    await nc.waitForText('dave: back again\n');
  });

  it('goes back to the nick form when the nick is taken, and refuses a nick with a space without connecting', async () => {
    const c = await chat();
    const nc = await TestClient.connect(c.address.port);
    await nc.write('erin\n');
    await nc.waitForText('* you are erin\n');
    const page = await browser.page(`http://127.0.0.1:${c.webAddress.port}/`);
    await joinAs(page, 'erin');
    await waitForText(page, '#nick-help', 'The nick erin is taken');
    expect(await page.getAttribute('#nick', 'aria-invalid')).toBe('true');
    await waitForText(page, '#state', 'Not connected.');

    await page.getByLabel('Your nick').fill('');
    await joinAs(page, 'two words');
    await waitForText(page, '#nick-help', 'one word');
    await waitFor(() => c.mux.clients.size === 1, 'only the TCP client');
  });

  it('has a labelled form, a polite live log and a status line', async () => {
    const c = await chat();
    const page = await browser.page(`http://127.0.0.1:${c.webAddress.port}/`);
    expect(await page.getAttribute('#state', 'role')).toBe('status');
    await joinAs(page, 'frank');
    await waitForText(page, '#state', 'Connected as frank.');
    expect(await page.getAttribute('#log', 'role')).toBe('log');
    expect(await page.getAttribute('#log', 'aria-live')).toBe('polite');
    expect(await page.getByRole('textbox', { name: 'Message', exact: true }).isVisible()).toBe(true);
    expect(await page.getByRole('button', { name: 'Send' }).isEnabled()).toBe(true);
  });
});
