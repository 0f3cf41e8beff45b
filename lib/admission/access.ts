import { BlockList, isIP } from 'node:net';
import { invalidArgument } from '../errors';
import type { AccessFilter } from '../types';

/** Addresses to let in or keep out: single addresses or CIDR ranges, IPv4 or IPv6. */
export interface AccessListOptions {
  /** When not empty, only these may connect. */
  allow?: readonly string[];
  /** These may never connect; wins over `allow`. */
  deny?: readonly string[];
}

/** Parses `10.0.0.0/8`, `::1`, `fe80::/10` or `127.0.0.1` into a BlockList rule; throws a TypeError otherwise. */
function addRule(list: BlockList, entry: string, option: string): void {
  const [address, prefix, extra] = String(entry).trim().split('/');
  const family = isIP(address);
  const bits = prefix === undefined ? undefined : Number(prefix);
  const maxBits = family === 6 ? 128 : 32;
  if (family === 0 || extra !== undefined || (bits !== undefined && (!/^\d+$/.test(prefix) || bits > maxBits))) {
    throw invalidArgument(
      `${option}: ${JSON.stringify(entry)} is not an IP address or CIDR range (e.g. 10.0.0.0/8, ::1)`,
    );
  }
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) list.addAddress(address, type);
  else list.addSubnet(address, bits, type);
}

function compile(entries: readonly string[] | undefined, option: string): BlockList | null {
  if (entries === undefined || entries.length === 0) return null;
  const list = new BlockList();
  for (const entry of entries) addRule(list, entry, option);
  return list;
}

function matches(list: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * A ready access filter from allow and deny lists (built on `net.BlockList`). A client whose address is
 * denied, or not allowed when an allow list is given, is refused with `-1`. Entries are validated at once.
 * @example
 * mux.addAccessFilter(accessList({ allow: ['127.0.0.1', '10.0.0.0/8', '::1'], deny: ['10.0.0.13'] }));
 */
export function accessList(options: AccessListOptions): AccessFilter<object> {
  const allow = compile(options.allow, 'allow');
  const deny = compile(options.deny, 'deny');
  return (client) => {
    if (deny !== null && matches(deny, client.address)) return -1;
    if (allow !== null && !matches(allow, client.address)) return -1;
    return true;
  };
}
