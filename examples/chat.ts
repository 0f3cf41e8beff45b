/**
 * A chat server: every line a user types goes to everyone else, with the user's nick in front.
 *
 *   npm run example:chat               listens on port 7777 (or: npm run example:chat -- 9000, or PORT=9000)
 *   nc localhost 7777                  in two or more terminals; the first line you type is your nick
 *
 * Several chat servers act as one over a bus: start each with BUS set (and its own port), e.g.
 *
 *   BUS=redis://127.0.0.1:6379 npm run example:chat -- 7777
 *   BUS=redis://127.0.0.1:6379 npm run example:chat -- 7778
 *
 * and users of either see each other's lines and announcements; nicks are unique across all of them.
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
 * With a bus, sendToAll() reaches the users of every server, and each user's nick is published with their
 * presence (the `presence` option), so every server knows every nick.
 */
import type { AddressInfo } from 'node:net';
import { busFromUrl, Multiplexer, type Bus, type Client } from '../lib';
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
  /** Joins other chat servers over this bus (a cluster); default none. */
  bus?: Bus;
}

/** How the others see a user: its nick once it gave one, `guest<id>` before. */
function nameOf(client: Client<ChatState>): string {
  return client.state.nick ?? `guest${client.id}`;
}

/** Creates the chat server, not yet listening; with a bus, one of several that act as one. */
export function createChat(bus?: Bus): Multiplexer<ChatState> {
  // `line` framing: filters get one whole line at a time (without its newline), and the newline is added
  // back to what they return. The type argument types `client.state` in every hook. `presence` says which
  // state fields the other servers of a cluster learn about each user.
  const mux = new Multiplexer<ChatState>({ framing: 'line', bus, presence: ['nick'] });

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
    mux.publishState(client); // the other servers learn the nick (nothing happens without a bus)
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

/** True when someone has `nick` already: on this server, or (with a bus) on any server of the cluster. */
function nickTaken(mux: Multiplexer<ChatState>, nick: string): boolean {
  return mux.members().some((member) => member.state.nick === nick);
}

/** Starts the chat server; resolves once it is listening. */
export async function start(options: ChatOptions = {}): Promise<{ mux: Multiplexer<ChatState>; address: AddressInfo }> {
  const mux = createChat(options.bus);
  const address = await mux.listen({ port: options.port ?? 0, host: options.host });
  return { mux, address };
}

// Run as a program: `node dist/examples/chat.js [port]`, with BUS=redis://... or BUS=nats://... for a cluster.
if (require.main === module) {
  const url = process.env.BUS;
  runExample('chat', async (options) => start({ ...options, bus: url ? await busFromUrl(url, 'chat') : undefined }));
}
