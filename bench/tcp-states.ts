/** The kernel's view of TCP connections on this machine (/proc/net/tcp), for the attack bench. */
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';

/**
 * Server-side TCP states of the connections accepted on `port` of this machine, by the peer's `address:port`
 * (see /proc/net/tcp). The server's side is what tells: a connection it closed leaves ESTABLISHED at once
 * (FIN_WAIT1 while its unsent data waits behind a peer that never reads), whereas the peer's side stays
 * ESTABLISHED until that FIN gets through, which for a never-reading peer is never.
 */
export function tcpStates(port: number): Map<string, number> {
  const states = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return states;
  }
  const wanted = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4 || !fields[1].endsWith(`:${wanted}`)) continue;
    const [hex, peerPort] = fields[2].split(':');
    // Little-endian IPv4 in hex: 0100007F is 127.0.0.1.
    const address = [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
    const key = `${address}:${parseInt(peerPort, 16)}`;
    // A TIME_WAIT entry of an earlier connection from the same port must not hide the live one.
    const state = parseInt(fields[3], 16);
    if (states.get(key) !== TCP_ESTABLISHED) states.set(key, state);
  }
  return states;
}

/** TCP_ESTABLISHED in /proc/net/tcp. */
export const TCP_ESTABLISHED = 1;

/** How many of `sockets` (connected to `port` of this machine) the server still holds open. */
export function stillOpen(port: number, sockets: readonly net.Socket[]): number {
  const states = tcpStates(port);
  let open = 0;
  for (const socket of sockets)
    if (states.get(`${socket.localAddress}:${socket.localPort}`) === TCP_ESTABLISHED) open += 1;
  return open;
}
