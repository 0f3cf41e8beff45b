/**
 * Observing a server: a plain broadcast server whose only code is event listeners, plus a stats line every
 * few seconds. Start from this to feed logs, metrics or an admin dashboard.
 *
 *   npm run example:events             listens on port 7777 (or: npm run example:events -- 9000, or PORT=9000)
 *   nc localhost 7777                  in a few terminals; type, quit, reconnect, and watch the log
 *
 * The events, in the order a client meets them:
 *   listening   the server is ready (once)
 *   deny        a connection was refused before it joined (here: more than `maxClients` at once)
 *   connect     a client joined the broadcast
 *   data        a message is being broadcast (after the data filters; none here)
 *   limit       a limit acted on a client that stays connected (here: sending faster than 50 messages/s)
 *   exit        a client that joined has left, with the reason ('eof', 'reset', 'idle', ...)
 *   error       user code (a filter, a listener) threw; the server keeps running
 *   close       destroy() has finished
 *
 * A listener that throws does not break the server: the error is logged and reported as an `error` event.
 */
import type { AddressInfo } from 'node:net';
import { Multiplexer, type MultiplexerOptions } from '../lib';
import { runExample } from './run-example';

/** Where to listen, and where the log goes. */
export interface EventsOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to listen on. Default: all. */
  host?: string;
  /** Where log lines go. Default: console.log, with a timestamp. */
  log?: (line: string) => void;
  /** How often to log `stats()`, in ms. Default 5000. */
  statsInterval?: number;
  /** Settings for the Multiplexer, over this example's own (maxClients 100, 50 messages/s per client). */
  settings?: MultiplexerOptions;
}

/** At most 40 characters of a message, as a quoted string: enough to recognise it in a log. */
function preview(message: Buffer): string {
  const text = JSON.stringify(message.subarray(0, 40).toString('utf8'));
  return message.length > 40 ? `${text}...` : text;
}

/** Starts a broadcast server that logs everything that happens to it; resolves once it is listening. */
export async function start(options: EventsOptions = {}): Promise<{ mux: Multiplexer; address: AddressInfo }> {
  const log = options.log ?? ((line: string) => console.log(`${new Date().toISOString()} ${line}`));
  const mux = new Multiplexer({ maxClients: 100, maxMessagesPerSecond: 50, ...options.settings });

  // A client prints as `client 3 (127.0.0.1:50412)`.
  mux.on('listening', (address) => {
    log(
      typeof address === 'string' ? `listening on ${address}` : `listening on ${address.address} port ${address.port}`,
    );
  });
  mux.on('deny', (client, reason) => log(`deny ${client}: ${reason}`));
  mux.on('connect', (client) => log(`connect ${client}`));
  mux.on('data', (message, client) => log(`data from ${client}: ${message.length} bytes ${preview(message)}`));
  mux.on('limit', (client, kind) => log(`limit ${client}: ${kind}`));
  mux.on('exit', (client, reason, error) => log(`exit ${client}: ${reason}${error ? ` (${error.message})` : ''}`));
  mux.on('error', (error, context) =>
    log(`error in ${context.source}${context.client ? ` of ${context.client}` : ''}: ${error.message}`),
  );

  const address = await mux.listen({ port: options.port ?? 0, host: options.host });

  // unref(): the timer alone does not keep the process alive; it is cleared when the server closes.
  const timer = setInterval(() => {
    const s = mux.stats();
    log(
      `stats: ${s.clients} clients, ${s.messagesIn} messages in (${s.bytesIn} bytes), ${s.messagesOut} out (${s.bytesOut} bytes), ` +
        `${s.queuedBytes} bytes queued, ${s.drops} dropped, ${s.filterErrors + s.hookErrors} errors`,
    );
  }, options.statsInterval ?? 5000);
  timer.unref();
  mux.on('close', () => {
    clearInterval(timer);
    log('close');
  });

  return { mux, address };
}

// Run as a program: `node dist/examples/events.js [port]`; the `listening` event prints where it listens.
if (require.main === module) runExample('events', start, false);
