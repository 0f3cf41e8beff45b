import { isIPv4, isIPv6 } from 'node:net';
import type { DenyReason } from '../types';

/** The limits the gate applies, read at every connection so that `config()` changes apply at once. */
export interface GateLimits {
  /** Most connections at once (every phase and transport); 0 is no limit. */
  readonly maxClients: number;
  /** Most connections from one address group; 0 is no limit. */
  readonly maxConnectionsPerAddress: number;
  /** IPv4 addresses are grouped by this prefix length for `maxConnectionsPerAddress`. */
  readonly ipv4Prefix: number;
  /** IPv6 addresses are grouped by this prefix length. */
  readonly ipv6Prefix: number;
}

/** A connection the gate let in: give it back with {@link ConnectionGate.leave} once it is gone. */
export interface GatePass {
  /** The address group it counts in, or null (a Unix client, which only `maxClients` counts). */
  readonly group: string | null;
}

/**
 * Counts connections before their handshake (TLS, WebSocket upgrade) and refuses those over the limits:
 * in all, and per address group (an IPv4 /32 or /24, an IPv6 /64, ...), so one host that owns a whole
 * prefix cannot take every slot. Every transport passes its connections through the same gate.
 */
export class ConnectionGate {
  private open = 0;
  private readonly groups = new Map<string, number>();

  constructor(private readonly limits: GateLimits) {}

  /** Connections counted now. */
  get size(): number {
    return this.open;
  }

  /**
   * Counts a new connection from `address` (`'local'` for Unix sockets).
   * @returns the pass to give back when it is gone, and why it is refused (null: let in). A refused
   * connection is counted too until it is gone, so a flood of them is counted while they close.
   */
  enter(address: string): { pass: GatePass; refusal: DenyReason | null } {
    const { maxClients, maxConnectionsPerAddress } = this.limits;
    const group = address === 'local' ? null : groupOf(address, this.limits);
    this.open += 1;
    let inGroup = 0;
    if (group !== null) {
      inGroup = (this.groups.get(group) ?? 0) + 1;
      this.groups.set(group, inGroup);
    }
    let refusal: DenyReason | null = null;
    if (maxClients > 0 && this.open > maxClients) refusal = 'max-clients';
    else if (maxConnectionsPerAddress > 0 && inGroup > maxConnectionsPerAddress) refusal = 'max-per-address';
    return { pass: { group }, refusal };
  }

  /** A connection let in by {@link enter} is gone. */
  leave(pass: GatePass): void {
    this.open -= 1;
    const group = pass.group;
    if (group === null) return;
    const left = (this.groups.get(group) ?? 1) - 1;
    if (left === 0) this.groups.delete(group);
    else this.groups.set(group, left);
  }
}

/** The group an address counts in: its prefix of the configured length, as text. */
export function groupOf(address: string, limits: Pick<GateLimits, 'ipv4Prefix' | 'ipv6Prefix'>): string {
  if (isIPv4(address)) {
    const bits = limits.ipv4Prefix;
    const value = address.split('.').reduce((sum, part) => sum * 256 + Number(part), 0);
    const size = 2 ** (32 - bits);
    return `${Math.floor(value / size) * size}/${bits}`;
  }
  if (isIPv6(address)) return `${maskIPv6(address, limits.ipv6Prefix)}/${limits.ipv6Prefix}`;
  return address;
}

/** The first `bits` bits of an IPv6 address, as 8 hex groups (the rest zeroed). */
function maskIPv6(address: string, bits: number): string {
  const groups = expandIPv6(address);
  const out: string[] = [];
  for (let i = 0; i < 8; i += 1) {
    const keep = Math.max(0, Math.min(16, bits - i * 16));
    const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
    out.push((groups[i] & mask).toString(16));
  }
  return out.join(':');
}

/** The eight 16-bit groups of an IPv6 address (`::` expanded, an embedded IPv4 tail converted). */
function expandIPv6(address: string): number[] {
  let text = address.split('%')[0];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left, right] = text.split('::');
  const head = left === '' ? [] : left.split(':');
  const tail = right === undefined ? [] : right === '' ? [] : right.split(':');
  const fill = right === undefined ? 0 : 8 - head.length - tail.length;
  return [...head, ...new Array<string>(fill).fill('0'), ...tail].map((group) => parseInt(group, 16) || 0);
}
