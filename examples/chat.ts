/**
 * A chat server: every line a user types goes to everyone else, with the user's nick in front.
 *
 *   npm run example:chat               listens on port 7777 (or: npm run example:chat -- 9000, or PORT=9000)
 *   nc localhost 7777                  in two or more terminals; the first line you type is your nick
 *
 * What a session looks like, seen by alice:
 *
 *   * welcome, guest0! Type your nick and press Enter.
 *   alice
 *   * you are alice
 *   * guest1 joined
 *   * guest1 is now bob
 *   bob: hi all
 *   * bob left (eof)
 *
 * It shows the three hooks of a Multiplexer, in the order a user meets them:
 * - an access filter, run once when someone connects: greets them and tells the others;
 * - a data filter, run on every line: turns the first line into the nick, prefixes later lines with it;
 * - an exit filter, run once when someone leaves, however they leave: tells the others, with the reason.
 */
import type { AddressInfo } from 'node:net';
import { Multiplexer, type Client } from '../lib';
import { runExample } from './run-example';

/** What the server remembers about each user, in `client.state`. */
export interface ChatState {
  /** Set by the first line the user sends. */
  nick: string;
}

/** Where the chat listens. */
export interface ChatOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to listen on. Default: all. */
  host?: string;
}

/** How the others see a user: its nick once it gave one, `guest<id>` before. */
function nameOf(client: Client<ChatState>): string {
  return client.state.nick ?? `guest${client.id}`;
}

/** Creates the chat server, not yet listening. */
export function createChat(): Multiplexer<ChatState> {
  // `line` framing: filters get one whole line at a time (without its newline), and the newline is added
  // back to what they return. The type argument types `client.state` in every hook.
  const mux = new Multiplexer<ChatState>({ framing: 'line' });

  // A newcomer. It is not part of the broadcast until this filter returns, so sendToAll() reaches only the
  // others. Returning -1 or false here would refuse it instead (see access-control.ts).
  mux.addAccessFilter((client) => {
    client.send(`* welcome, ${nameOf(client)}! Type your nick and press Enter.\n`);
    mux.sendToAll(`* ${nameOf(client)} joined\n`);
    return true;
  });

  // Every line anyone sends. What this returns is broadcast to the others; null swallows the line.
  mux.addFilter((line, client) => {
    const text = line.toString('utf8');
    if (client.state.nick !== undefined) return `${client.state.nick}: ${text}`;

    // The first line is the nick: one word, not taken by someone else.
    const nick = text.trim();
    if (!/^\S+$/.test(nick) || nickTaken(mux, nick)) {
      client.send(`* "${nick}" cannot be your nick; try another one\n`);
      return null;
    }
    mux.sendToAll(`* ${nameOf(client)} is now ${nick}\n`, client);
    client.state.nick = nick;
    client.send(`* you are ${nick}\n`);
    return null;
  });

  // Someone left: `reason` says why ('eof' when they closed the connection, 'reset', 'idle', 'destroy'...).
  // They are already out of the broadcast, so sendToAll() reaches only those who stay.
  mux.addExitFilter((client, reason) => {
    mux.sendToAll(`* ${nameOf(client)} left (${reason})\n`);
  });

  return mux;
}

function nickTaken(mux: Multiplexer<ChatState>, nick: string): boolean {
  for (const client of mux.clients) if (client.state.nick === nick) return true;
  return false;
}

/** Starts the chat server; resolves once it is listening. */
export async function start(options: ChatOptions = {}): Promise<{ mux: Multiplexer<ChatState>; address: AddressInfo }> {
  const mux = createChat();
  const address = await mux.listen({ port: options.port ?? 0, host: options.host });
  return { mux, address };
}

// Run as a program: `node dist/examples/chat.js [port]`.
if (require.main === module) runExample('chat', start);
