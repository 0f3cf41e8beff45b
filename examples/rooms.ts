/**
 * Chat rooms, private messages and a per-user mute list, on the library's rooms and forward filter.
 *
 *   npm run example:rooms              listens on port 7777 (or: npm run example:rooms -- 9000, or PORT=9000)
 *   nc localhost 7777                  in two or more terminals, then type:
 *
 *   /nick alice                        choose your nick (you start as user<N>)
 *   /join games                        leave your room for #games (everyone starts in #lobby)
 *   /msg bob are you there?            a private message to bob, wherever he is
 *   /mute bob, /unmute bob             stop (or start again) seeing what bob says
 *   /who                               who is in your room
 *   anything else                      goes to the others in your room, as "alice: anything else"
 *
 * What it uses:
 * - client.join(room) / client.leave(room), and sendToRoom(room, text): the library keeps the rooms, and a
 *   message to a room is written to its members as slices of one shared buffer, like any broadcast.
 * - filter(), overridden: runs on every line before it is broadcast. Commands are handled here and
 *   swallowed (null); other lines go on to `super.filter()`, which runs the filters added with addFilter().
 * - broadcast(), overridden: delivers each line to the sender's room with deliver(), the one delivery
 *   primitive, instead of to everyone.
 * - a forward filter: runs per receiver, so each user's mute list decides what that user gets.
 */
import type { AddressInfo } from 'node:net';
import { Multiplexer, type Client, type FilterResult, type MultiplexerOptions } from '../lib';
import { runExample } from './run-example';

/** What the server remembers about each user, in `client.state`. */
export interface RoomState {
  nick: string;
  room: string;
  /** Nicks this user does not want to hear. */
  muted: Set<string>;
}

type RoomClient = Client<RoomState>;

const HELP = '* commands: /nick <name>, /join <room>, /msg <nick> <text>, /mute <nick>, /unmute <nick>, /who\n';

/** A line-based chat server with rooms (`/join`), private messages (`/msg`) and mute lists (`/mute`). */
export class RoomMultiplexer extends Multiplexer<RoomState> {
  /** Who is called what: nicks are unique. */
  private readonly byNick = new Map<string, RoomClient>();

  constructor(options: MultiplexerOptions = {}) {
    super({ framing: 'line', ...options });

    // Every newcomer gets a provisional nick and starts in the lobby.
    this.on('connect', (client) => {
      this.rename(client, `user${client.id}`);
      client.state.muted = new Set();
      this.moveTo(client, 'lobby');
      client.send(`* you are ${client.state.nick}, in #lobby\n${HELP}`);
    });

    // Ordinary lines: run by super.filter() below, for lines that are not commands.
    this.addFilter((line, client) => `${client.state.nick}: ${line.toString('utf8')}`);

    // Per receiver: what a muted sender says does not reach the user who muted them.
    this.addForwardFilter((_message, receiver, sender) =>
      sender !== null && receiver.state.muted?.has(sender.state.nick ?? '') === true ? null : undefined,
    );

    this.addExitFilter((client, reason) => {
      if (client.state.nick !== undefined) this.byNick.delete(client.state.nick);
      if (client.state.room !== undefined) {
        this.sendToRoom(client.state.room, `* ${client.state.nick} left (${reason})\n`);
      }
    });
  }

  /** Handles commands (and swallows them); passes other lines on to the filters added with addFilter(). */
  override filter(data: Buffer, client: RoomClient): FilterResult | Promise<FilterResult> {
    const line = data.toString('utf8');
    if (!line.startsWith('/')) return super.filter(data, client);

    // "/msg bob are you there?" -> command "msg", word "bob", rest "are you there?"
    const [, command = '', word = '', rest = ''] = /^\/(\S*)\s*(\S*)\s*(.*)$/.exec(line) ?? [];
    const me = client.state.nick ?? '';
    if (command === 'nick' && word !== '') {
      if (this.byNick.has(word)) {
        client.send(`* ${word} is taken\n`);
      } else {
        this.sendToRoom(client.state.room ?? 'lobby', `* ${me} is now ${word}\n`);
        this.rename(client, word);
      }
    } else if (command === 'join' && word !== '') {
      const room = word.replace(/^#/, '');
      this.sendToRoom(client.state.room ?? 'lobby', `* ${me} left for #${room}\n`, client);
      this.moveTo(client, room);
    } else if (command === 'msg' && word !== '' && rest !== '') {
      const target = this.byNick.get(word);
      if (target === undefined) client.send(`* nobody is called ${word}\n`);
      else target.send(`* ${me} whispers: ${rest}\n`);
    } else if ((command === 'mute' || command === 'unmute') && word !== '') {
      if (command === 'mute') client.state.muted?.add(word);
      else client.state.muted?.delete(word);
      client.send(`* ${command}d ${word}\n`);
    } else if (command === 'who') {
      const here = [...this.room(client.state.room ?? 'lobby')].map((other) => other.state.nick);
      client.send(`* in #${client.state.room}: ${here.join(', ')}\n`);
    } else {
      client.send(HELP);
    }
    return null; // a command is never broadcast
  }

  /** Sends each line to the sender's room only (to the sender too when sendToOrigin is on). */
  protected override broadcast(message: Buffer, sender: RoomClient): void {
    const rooms = sender.state.room === undefined ? [] : [sender.state.room];
    this.deliver(message, { rooms, except: this.settings.sendToOrigin ? null : sender });
  }

  /** Moves a client to `room`, announcing it there. */
  private moveTo(client: RoomClient, room: string): void {
    if (client.state.room !== undefined) client.leave(client.state.room);
    client.state.room = room;
    this.sendToRoom(room, `* ${client.state.nick} joined #${room}\n`);
    client.join(room);
  }

  private rename(client: RoomClient, nick: string): void {
    if (client.state.nick !== undefined) this.byNick.delete(client.state.nick);
    client.state.nick = nick;
    this.byNick.set(nick, client);
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
