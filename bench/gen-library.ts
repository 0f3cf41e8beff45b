/**
 * WebSocket clients of the load generator made with the real packages (`--ws-client library`): the `ws`
 * client for `ws-text` / `ws-binary`, socket.io-client (WebSocket transport only) for `socketio`. They
 * cost the generator about 1 µs of CPU per message received (the own codec: a few dozen ns), so they are
 * for conformance runs: the same checks, on what the packages hand over.
 */
import { io } from 'socket.io-client';
import { WebSocket } from 'ws';
import type { ProtocolName } from './protocols';

export interface LibraryEvents {
  /** The connection is ready (WebSocket open; socket.io connected to its namespace). */
  open(): void;
  /** One message: its bytes (socket.io: the event's string as latin1), and whether it came as binary. */
  message(data: Buffer, binary: boolean): void;
  /** The connection ended or failed, and why. */
  close(why: string): void;
}

export interface LibraryLink {
  /** Sends buf[start, end) as one message; `done` once it was written (socket.io: on the next turn). */
  send(buf: Buffer, start: number, end: number, done: ((error?: Error | null) => void) | null): void;
  /** Bytes sent but not written out yet. */
  readonly buffered: number;
  close(): void;
}

export function connectLibrary(proto: ProtocolName, host: string, port: number, events: LibraryEvents): LibraryLink {
  if (proto === 'socketio') {
    const socket = io(`http://${host}:${port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
    socket.on('connect', () => events.open());
    socket.on('m', (text: string) => events.message(Buffer.from(text, 'latin1'), false));
    socket.on('connect_error', (error: Error) => events.close(`connect error: ${error.message}`));
    socket.on('disconnect', (reason: string) => events.close(`disconnected: ${reason}`));
    return {
      send(buf, start, end, done) {
        socket.emit('m', buf.toString('latin1', start, end));
        if (done !== null) setImmediate(done);
      },
      get buffered() {
        return 0;
      },
      close() {
        socket.disconnect();
      },
    };
  }
  const binary = proto === 'ws-binary';
  const ws = new WebSocket(`ws://${host}:${port}/`, { perMessageDeflate: false });
  ws.on('open', () => events.open());
  // Unfragmented messages with the default binaryType arrive as one Buffer.
  ws.on('message', (data: Buffer, isBinary: boolean) => events.message(data, isBinary));
  ws.on('error', (error: Error) => events.close(`error: ${error.message}`));
  ws.on('close', (code: number, reason: Buffer) => events.close(`close ${code} ${reason.toString()}`));
  return {
    send(buf, start, end, done) {
      ws.send(buf.subarray(start, end), { binary }, done ?? undefined);
    },
    get buffered() {
      return ws.bufferedAmount;
    },
    close() {
      ws.terminate();
    },
  };
}
