/**
 * The chat of chat.ts for browsers and terminals together: a web page on http://localhost:8080/ talks over a
 * WebSocket to the same server, and `nc localhost 7777` users are in the same room.
 *
 *   npm run example:web-chat               web page on port 8080, TCP on port 7777
 *   npm run example:web-chat -- 7000 9000  TCP on 7000, web on 9000 (or PORT=7000 WEB_PORT=9000)
 *   nc localhost 7777                      and open http://localhost:8080/ in two browser tabs
 *
 * The page (examples/web-chat/index.html and chat.js, plain JavaScript) sends the nick as its first line,
 * then each line typed, one WebSocket text message per line; it shows what the server sends, reconnects
 * with backoff when the connection drops, and says so on the page.
 *
 * What it shows:
 * - one Multiplexer, two ways in: `listen({ port })` for TCP, and `listen(websocket({ server, path }))` for
 *   WebSocket clients on a path of your own http server (which goes on serving the page);
 * - the same hooks for both: the chat's access, data and exit filters never ask how a client came;
 * - an Origin allow list: only pages served by this server may connect (a page of another site is refused).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Multiplexer } from '../lib';
import { websocket } from '../lib/ws';
import { createChat, type ChatState } from './chat';
import { runExample } from './run-example';

/** Where the web chat listens. */
export interface WebChatOptions {
  /** TCP port for `nc` users; 0 picks a free one. Default 0. */
  port?: number;
  /** Port of the web page and its WebSocket (path /chat); 0 picks a free one. Default 0. */
  webPort?: number;
  /** Interface to listen on. Default: all. */
  host?: string;
  /** Origins of pages allowed to connect. Default: this server's page as localhost, 127.0.0.1 and [::1]. */
  origins?: string[];
}

/** The page's two files, read once: next to this file, or in examples/ when this runs from dist/examples/. */
function readPage(): Record<string, { type: string; body: Buffer }> {
  const dirs = [join(__dirname, 'web-chat'), join(__dirname, '..', '..', 'examples', 'web-chat')];
  const dir = dirs.find((candidate) => existsSync(join(candidate, 'index.html'))) ?? dirs[0];
  return {
    '/': { type: 'text/html; charset=utf-8', body: readFileSync(join(dir, 'index.html')) },
    '/chat.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(join(dir, 'chat.js')) },
  };
}

/** Starts the web chat; resolves once both ports listen. */
export async function start(
  options: WebChatOptions = {},
): Promise<{ mux: Multiplexer<ChatState>; address: AddressInfo; web: Server; webAddress: AddressInfo }> {
  const files = readPage();
  // A plain http server for the page. It is ours: the multiplexer only listens to its 'upgrade' event.
  const web = createServer((request, response) => {
    const file = request.method === 'GET' ? files[request.url ?? ''] : undefined;
    response.writeHead(file === undefined ? 404 : 200, { 'Content-Type': file?.type ?? 'text/plain' });
    response.end(file?.body ?? 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    web.once('error', reject);
    web.listen(options.webPort ?? 0, options.host, resolve);
  });
  const webAddress = web.address() as AddressInfo;

  const mux = createChat(); // line framing, nick, join and leave announcements: all of chat.ts
  // When the multiplexer is destroyed (Ctrl-C), the page's server goes too.
  mux.once('close', () => {
    web.closeAllConnections();
    web.close();
  });
  try {
    const port = webAddress.port;
    // Browsers send the page's origin with their upgrade request; add yours (https://chat.example.com).
    const origins = options.origins ?? [`http://localhost:${port}`, `http://127.0.0.1:${port}`, `http://[::1]:${port}`];
    await mux.listen(websocket({ server: web, path: '/chat', origins }));
    const address = await mux.listen({ port: options.port ?? 0, host: options.host });
    return { mux, address, web, webAddress };
  } catch (error) {
    await mux.destroy();
    throw error;
  }
}

// Run as a program: `node dist/examples/web-chat.js [port] [web port]`.
if (require.main === module) {
  const webPort = Number(process.argv[3] ?? process.env.WEB_PORT ?? 8080);
  runExample(
    'web-chat',
    ({ port }) => start({ port, webPort }),
    true,
    ({ webAddress }) => `web-chat: open http://localhost:${webAddress.port}/ in a browser`,
  );
}
