/**
 * Access control: decide who may join, before they are part of the broadcast.
 *
 *   npm run example:access             listens on port 7777 (or: npm run example:access -- 9000, or PORT=9000)
 *   nc 127.0.0.1 7777                  allowed: what you type reaches the other allowed clients
 *   nc -s 127.0.0.2 127.0.0.1 7777     refused by the deny list (Linux routes all of 127/8 to this machine)
 *
 *   BANNED_FILE=banned.txt npm run example:access
 *   echo 127.0.0.1 >> banned.txt       127.0.0.1 is refused from its next connection on; no restart needed
 *
 * It shows:
 * - accessList(): ready-made allow and deny lists of addresses and CIDR ranges; deny wins over allow;
 * - a custom async access filter: a ban file, re-read at every connection, so an address can be banned
 *   without a restart. While it reads, the newcomer waits; what it sends meanwhile is kept, not lost;
 * - the `deny` event, to log every refused connection and why; the `error` event, for a filter that failed.
 *
 * Access filters run in the order they were added; the first that returns -1 (or false) refuses the client,
 * and one that throws or rejects refuses it too (fail closed).
 */
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { accessList, Multiplexer, type AccessFilter } from '../lib';
import { runExample } from './run-example';

/** Where to listen and whom to let in. */
export interface AccessControlOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to listen on. Default: all. */
  host?: string;
  /** Only these addresses or ranges may connect. Default: this machine only. */
  allow?: string[];
  /** These may never connect, even when allowed. Default: 127.0.0.2, to try the deny list locally. */
  deny?: string[];
  /** A file of banned addresses, one a line (`#` starts a comment). Default: $BANNED_FILE, or none. */
  bannedFile?: string;
  /** Where log lines go. Default: console.log. */
  log?: (line: string) => void;
}

/**
 * An async access filter that refuses the addresses listed in `file`, read again at every connection.
 * A missing file bans nobody; any other read error rejects, and the library then refuses the client.
 */
export function bannedIn(file: string, log: (line: string) => void): AccessFilter<object> {
  return async (client) => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw error;
    }
    const banned = text.split('\n').some((line) => line.replace(/#.*/, '').trim() === client.address);
    if (!banned) return true;
    log(`${client.address} is listed in ${file}`);
    return -1;
  };
}

/** Starts a broadcast server that only lets some addresses in; resolves once it is listening. */
export async function start(options: AccessControlOptions = {}): Promise<{ mux: Multiplexer; address: AddressInfo }> {
  const log = options.log ?? console.log;
  const mux = new Multiplexer();

  // 1. Addresses. IPv4 clients that reach an IPv6 socket (::ffff:127.0.0.1) are matched as plain IPv4.
  mux.addAccessFilter(
    accessList({
      allow: options.allow ?? ['127.0.0.0/8', '::1'],
      deny: options.deny ?? ['127.0.0.2'],
    }),
  );

  // 2. The ban file; it only runs for clients the lists let through.
  const bannedFile = options.bannedFile ?? process.env.BANNED_FILE;
  if (bannedFile !== undefined) mux.addAccessFilter(bannedIn(bannedFile, log));

  // A refused client never joins: no `connect`, no exit filters, no `exit`; only this event.
  mux.on('deny', (client, reason) => log(`denied ${client.address} port ${client.port} (${reason})`));
  mux.on('connect', (client) => log(`${client} joined`));
  mux.on('exit', (client, reason) => log(`${client} left (${reason})`));
  // An access filter that throws: the client is refused (reason 'access-error') and the error lands here.
  mux.on('error', (error, context) => log(`${context.source} failed: ${error.message}`));

  const address = await mux.listen({ port: options.port ?? 0, host: options.host });
  return { mux, address };
}

// Run as a program: `node dist/examples/access-control.js [port]`.
if (require.main === module) runExample('access-control', start);
