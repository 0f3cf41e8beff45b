/**
 * Smoke test of the browser harness (spec/helpers/browser.ts): headless Debian chromium loads a page from a
 * local http server and talks WebSocket to a bare `ws` server on the same port.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { useBrowser, waitForText } from './helpers/browser';
import { onTeardown } from './helpers/net';

/** A page that opens `ws://<its host>/<path from ?path=>`, sends one line and logs what happens. */
const PAGE = `<!doctype html>
<html lang="en"><meta charset="utf-8"><title>echo</title>
<ul id="log"></ul>
<script>
  const log = (text) => {
    const item = document.createElement('li');
    item.textContent = text;
    document.getElementById('log').append(item);
  };
  const path = new URLSearchParams(location.search).get('path') ?? '/echo';
  const ws = new WebSocket('ws://' + location.host + path);
  ws.onopen = () => { log('open'); ws.send('hello from the browser'); };
  ws.onmessage = (event) => log('got: ' + event.data);
  ws.onclose = (event) => log('closed ' + event.code);
</script>
</html>`;

interface EchoServer {
  readonly port: number;
  /** Text messages the server received, in order. */
  readonly received: string[];
}

/** An http server on an ephemeral port serving PAGE, with a `ws` echo on /echo; closed after the test. */
async function echoServer(): Promise<EchoServer> {
  const received: string[] = [];
  const clients = new Set<WebSocket>();
  const wss = new WebSocketServer({ noServer: true, clientTracking: false });
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    if (req.url !== '/echo') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
      ws.send('welcome');
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) return;
        received.push(data.toString());
        ws.send(`echo: ${data.toString()}`);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTeardown(async () => {
    for (const ws of clients) ws.terminate();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, received };
}

describe('browser harness', () => {
  const browser = useBrowser();

  it('loads a page from a local server and exchanges WebSocket text messages with it', async () => {
    const echo = await echoServer();
    const page = await browser.page(`http://127.0.0.1:${echo.port}/`);
    await waitForText(page, '#log', 'got: welcome');
    await waitForText(page, '#log', 'got: echo: hello from the browser');
    expect(echo.received).toEqual(['hello from the browser']);
  });

  it('sees a refused upgrade as a failed connection (close 1006)', async () => {
    const echo = await echoServer();
    const page = await browser.page(`http://127.0.0.1:${echo.port}/?path=/elsewhere`);
    await waitForText(page, '#log', 'closed 1006');
    expect(await page.locator('#log li').allTextContents()).toEqual(['closed 1006']);
    expect(echo.received).toEqual([]);
  });
});
