/**
 * Rooms on the library, a peer of the benchmark's `rooms:N:B:R` case: line framing; a client's first line
 * `/room NAME` is handled by a data filter that joins it to that room and drops the line; a `broadcast()`
 * override delivers every other line to the rest of the sender's room with `deliver()`. The target of each
 * client is built once, when it joins, so nothing is allocated per message. A client that named no room
 * broadcasts to everyone, like `mux-line`.
 * Usage: node dist/bench/servers/mux-rooms.js --host 127.0.0.1 --port N
 */
import { type Client, Multiplexer, type Target } from '../../lib';
import { announce, listenArgs } from './args';

interface RoomState {
  /** Where this client's messages go: the other members of its room. */
  target?: Target<RoomState>;
}

const ROOM_COMMAND = Buffer.from('/room ');

class RoomsMultiplexer extends Multiplexer<RoomState> {
  constructor() {
    super({ framing: 'line' });
    this.addFilter((line, client) => {
      if (line[0] !== ROOM_COMMAND[0] || !line.subarray(0, ROOM_COMMAND.length).equals(ROOM_COMMAND)) return undefined;
      const room = line.toString('utf8', ROOM_COMMAND.length);
      const previous = client.state.target?.rooms?.[0];
      if (previous !== undefined) client.leave(previous);
      client.join(room);
      client.state.target = { rooms: [room], except: client };
      return null;
    });
  }

  protected override broadcast(message: Buffer, sender: Client<RoomState>): void {
    const target = sender.state.target;
    if (target === undefined) super.broadcast(message, sender);
    else this.deliver(message, target);
  }
}

const { host, port } = listenArgs();
const mux = new RoomsMultiplexer();
mux.listen({ host, port }).then(
  () => announce('mux-rooms', host, port),
  (error: unknown) => {
    process.stderr.write(`mux-rooms: ${String(error)}\n`);
    process.exit(1);
  },
);
const stop = (): void => {
  void mux.destroy({ timeout: 1000 }).then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
