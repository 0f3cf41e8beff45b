/**
 * The browser chat page (examples/web-chat) in headless chromium, against a stand-in room written here:
 * an http server that serves the page and speaks the page's protocol on /chat (the first line of a
 * connection is the nick, later lines go to the others as `nick: line`, joins and leaves announced with
 * `* `). The real server program replaces the stand-in in the end-to-end specs of issue 10.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { type WebSocket, WebSocketServer } from 'ws';
import { textOf, useBrowser, waitForText } from './helpers/browser';
import { onTeardown, waitFor } from './helpers/net';

const PAGE_DIR = join(__dirname, '..', 'examples', 'web-chat');
const FILES: Record<string, { type: string; body: Buffer }> = {
  '/': { type: 'text/html; charset=utf-8', body: readFileSync(join(PAGE_DIR, 'index.html')) },
  '/chat.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(join(PAGE_DIR, 'chat.js')) },
};

/** One WebSocket connection of the stand-in room: what it sent, in order, and whether it is still open. */
interface Member {
  readonly lines: string[];
  binary: number;
}

/** The stand-in room; `stop()` and `start()` restart it on the same port. */
class Room {
  readonly members: Member[] = [];
  private server: Server | null = null;
  private readonly connections = new Set<WebSocket>();
  /** Connections that gave their nick: they get the others' lines. */
  private readonly joined = new Set<WebSocket>();
  port = 0;

  async start(): Promise<void> {
    const wss = new WebSocketServer({ noServer: true, clientTracking: false });
    const server = createServer((req, res) => {
      const file = FILES[req.url ?? ''];
      res.writeHead(file === undefined ? 404 : 200, { 'content-type': file?.type ?? 'text/plain' });
      res.end(file?.body ?? 'not found');
    });
    server.on('upgrade', (req, socket, head) => {
      socket.on('error', () => socket.destroy());
      if (req.url !== '/chat') {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => this.adopt(ws));
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    for (const ws of this.connections) ws.terminate();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private adopt(ws: WebSocket): void {
    const member: Member = { lines: [], binary: 0 };
    this.members.push(member);
    this.connections.add(ws);
    let nick: string | null = null;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        member.binary += 1;
        return;
      }
      const line = data.toString();
      member.lines.push(line);
      if (nick === null) {
        nick = line;
        this.joined.add(ws);
        this.toOthers(ws, `* ${nick} joined`);
      } else this.toOthers(ws, `${nick}: ${line}`);
    });
    ws.on('close', () => {
      this.connections.delete(ws);
      if (this.joined.delete(ws)) this.toOthers(ws, `* ${nick} left`);
    });
  }

  private toOthers(from: WebSocket, line: string): void {
    for (const ws of this.joined) if (ws !== from) ws.send(line);
  }
}

async function room(): Promise<Room> {
  const r = new Room();
  await r.start();
  onTeardown(() => r.stop());
  return r;
}

/** Joins with `nick` using the keyboard only: focus the nick field by its label, type, Enter. */
async function joinAs(page: Page, nick: string): Promise<void> {
  await page.getByLabel('Your nick').focus();
  await page.keyboard.type(nick);
  await page.keyboard.press('Enter');
}

describe('examples/web-chat page', () => {
  const browser = useBrowser();

  it('sends the nick first, then typed lines as text frames without newline, and shows the others', async () => {
    const r = await room();
    const alice = await browser.page(`http://127.0.0.1:${r.port}/`);
    await joinAs(alice, 'alice');
    await waitForText(alice, '#state', 'Connected as alice.');

    const bob = await browser.page(`http://127.0.0.1:${r.port}/`);
    await joinAs(bob, 'bob');
    await waitForText(alice, '#log', '* bob joined');

    // Focus moved to the message field on joining: typing and Enter are enough.
    await alice.keyboard.type('hello bob');
    await alice.keyboard.press('Enter');
    await waitForText(bob, '#log', 'alice: hello bob');
    await waitForText(alice, '#log', 'alice: hello bob');
    expect(await alice.inputValue('#message')).toBe('');
    await waitFor(() => r.members[0].lines.length === 2, 'both lines of alice at the server');
    expect(r.members[0].lines).toEqual(['alice', 'hello bob']);
    expect(r.members[0].binary).toBe(0);

    await bob.keyboard.type('hi alice');
    await bob.keyboard.press('Enter');
    await waitForText(alice, '#log', 'bob: hi alice');

    await bob.getByRole('button', { name: 'Leave' }).press('Enter');
    await waitForText(alice, '#log', '* bob left');
    await waitForText(bob, '#state', 'Not connected.');
    expect(await bob.getByLabel('Your nick').isVisible()).toBe(true);
  });

  it('has a labelled form, a polite live log and a status line', async () => {
    const r = await room();
    const page = await browser.page(`http://127.0.0.1:${r.port}/`);
    expect(await page.getAttribute('#state', 'role')).toBe('status');
    await joinAs(page, 'carol');
    await waitForText(page, '#state', 'Connected as carol.');
    expect(await page.getAttribute('#log', 'role')).toBe('log');
    expect(await page.getAttribute('#log', 'aria-live')).toBe('polite');
    expect(await page.getByRole('textbox', { name: 'Message', exact: true }).isVisible()).toBe(true);
    expect(await page.getByRole('button', { name: 'Send' }).isEnabled()).toBe(true);
  });

  it('refuses a nick with a space, says why, and does not connect', async () => {
    const r = await room();
    const page = await browser.page(`http://127.0.0.1:${r.port}/`);
    await joinAs(page, 'two words');
    await waitForText(page, '#nick-help', 'one word');
    expect(await page.getAttribute('#nick', 'aria-invalid')).toBe('true');
    expect(await textOf(page, '#state')).toContain('Not connected.');
    expect(r.members).toHaveLength(0);
  });

  it('shows that it is disconnected, then reconnects and sends the nick again after a server restart', async () => {
    const r = await room();
    const page = await browser.page(`http://127.0.0.1:${r.port}/`);
    await joinAs(page, 'dave');
    await waitForText(page, '#state', 'Connected as dave.');

    await r.stop();
    await waitForText(page, '#state', /Disconnected, reconnecting\s+in \d+ s/);
    expect(await page.getByRole('button', { name: 'Send' }).isDisabled()).toBe(true);

    await r.start();
    await waitForText(page, '#state', 'Connected as dave.');
    const last = r.members[r.members.length - 1];
    await waitFor(() => last.lines.length > 0, 'the nick on the new connection');
    expect(last.lines).toEqual(['dave']);
    expect(r.members.filter((m) => m.lines.length > 0).map((m) => m.lines[0])).toEqual(['dave', 'dave']);
  });
});
