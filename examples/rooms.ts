/**
 * Chat rooms and private messages, by subclassing Multiplexer.
 *
 *   npm run example:rooms              listens on port 7777 (or: npm run example:rooms -- 9000, or PORT=9000)
 *   nc localhost 7777                  in two or more terminals, then type:
 *
 *   /nick alice                        choose your nick (you start as user<N>)
 *   /join games                        leave your room for #games (everyone starts in #lobby)
 *   /msg bob are you there?            a private message to bob, wherever he is
 *   /who                               who is in your room
 *   anything else                      goes to the others in your room, as "alice: anything else"
 *
 * It overrides two methods:
 * - filter(): runs on every line before it is broadcast. Commands are handled here and swallowed (null);
 *   other lines go on to `super.filter()`, which runs the filters added with addFilter().
 * - broadcast(): delivers one message. The default sends it to every client but the sender; this one sends
 *   it only to the clients in the sender's room.
 */
import type { AddressInfo } from 'node:net';
import { Multiplexer, type Client, type FilterResult, type MultiplexerOptions } from '../lib';
import { runExample } from './run-example';

/** What the server remembers about each user, in `client.state`. */
export interface RoomState {
  nick: string;
  room: string;
}

type RoomClient = Client<RoomState>;

const HELP = '* commands: /nick <name>, /join <room>, /msg <nick> <text>, /who\n';

/** A line-based chat server with rooms (`/join`) and private messages (`/msg`). */
export class RoomMultiplexer extends Multiplexer<RoomState> {
  constructor(options: MultiplexerOptions = {}) {
    super({ framing: 'line', ...options });

    // Every newcomer gets a provisional nick and starts in the lobby.
    this.addAccessFilter((client) => {
      client.state.nick = `user${client.id}`;
      client.state.room = 'lobby';
      client.send(`* you are ${client.state.nick}, in #lobby\n${HELP}`);
      this.sendToRoom('lobby', `* ${client.state.nick} joined #lobby\n`);
    });

    // Ordinary lines: run by super.filter() below, for lines that are not commands.
    this.addFilter((line, client) => `${client.state.nick}: ${line.toString('utf8')}`);

    this.addExitFilter((client, reason) => {
      this.sendToRoom(client.state.room, `* ${client.state.nick} left (${reason})\n`);
    });
  }

  /** Handles commands (and swallows them); passes other lines on to the filters added with addFilter(). */
  override filter(data: Buffer, client: RoomClient): FilterResult | Promise<FilterResult> {
    const line = data.toString('utf8');
    if (!line.startsWith('/')) return super.filter(data, client);

    // "/msg bob are you there?" -> command "msg", word "bob", rest "are you there?"
    const [, command = '', word = '', rest = ''] = /^\/(\S*)\s*(\S*)\s*(.*)$/.exec(line) ?? [];
    const me = client.state.nick;
    if (command === 'nick' && word !== '') {
      if (this.find(word) !== undefined) {
        client.send(`* ${word} is taken\n`);
      } else {
        this.sendToRoom(client.state.room, `* ${me} is now ${word}\n`);
        client.state.nick = word;
      }
    } else if (command === 'join' && word !== '') {
      const room = word.replace(/^#/, '');
      this.sendToRoom(client.state.room, `* ${me} left for #${room}\n`, client);
      client.state.room = room;
      this.sendToRoom(room, `* ${me} joined #${room}\n`);
    } else if (command === 'msg' && word !== '' && rest !== '') {
      const target = this.find(word);
      if (target === undefined) client.send(`* nobody is called ${word}\n`);
      else target.send(`* ${me} whispers: ${rest}\n`);
    } else if (command === 'who') {
      const here = [...this.clients].filter((other) => other.state.room === client.state.room);
      client.send(`* in #${client.state.room}: ${here.map((other) => other.state.nick).join(', ')}\n`);
    } else {
      client.send(HELP);
    }
    return null; // a command is never broadcast
  }

  /**
   * Sends a message to the others in the sender's room. Called once per message that passed the filters;
   * `message` is the same Buffer for every receiver, so it is sent as it is, never copied or changed.
   */
  protected override broadcast(message: Buffer, sender: RoomClient): void {
    const room = sender.state.room;
    const toOrigin = this.config('sendToOrigin');
    for (const client of this.clients) {
      if (client.state.room === room && (client !== sender || toOrigin)) client.send(message);
    }
  }

  /** Server code sends to everyone in `room`, but `except`. */
  sendToRoom(room: string | undefined, text: string, except?: RoomClient): void {
    const message = Buffer.from(text); // once, for every receiver
    for (const client of this.clients) {
      if (client.state.room === room && client !== except) client.send(message);
    }
  }

  /** The client called `nick`, if any. */
  find(nick: string): RoomClient | undefined {
    for (const client of this.clients) if (client.state.nick === nick) return client;
    return undefined;
  }
}

/** Where the server listens. */
export interface RoomsOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to listen on. Default: all. */
  host?: string;
}

/** Starts the rooms server; resolves once it is listening. */
export async function start(options: RoomsOptions = {}): Promise<{ mux: RoomMultiplexer; address: AddressInfo }> {
  const mux = new RoomMultiplexer();
  const address = await mux.listen({ port: options.port ?? 0, host: options.host });
  return { mux, address };
}

// Run as a program: `node dist/examples/rooms.js [port]`.
if (require.main === module) runExample('rooms', start);
