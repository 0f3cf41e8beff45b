import { BlockList, isIP } from 'node:net';
import { invalidArgument } from '../errors';
import type { AccessFilter } from '../types';

/**
 * Addresses to let in or keep out: single addresses or CIDR ranges, IPv4 or IPv6, and the word `unix`.
 *
 * IP rules are about IP clients only: a Unix-socket client (address `'local'`) never matches one, so an allow
 * list of IP ranges does not keep it out (who may connect to a Unix socket is the socket file's mode). Put
 * `unix` in `deny` to keep Unix clients out, or in `allow` (with IP ranges) to say so explicitly.
 */
export interface AccessListOptions {
  /** When it has IP rules, only IP clients in them may connect. */
  allow?: readonly string[];
  /** These may never connect; wins over `allow`. `unix` denies every Unix-socket client. */
  deny?: readonly string[];
}

/** The word that stands for Unix-socket clients in a list. */
const UNIX = 'unix';

/** Parses `10.0.0.0/8`, `::1`, `fe80::/10` or `127.0.0.1` into a BlockList rule; throws a TypeError otherwise. */
function addRule(list: BlockList, entry: string, option: string): void {
  const [address, prefix, extra] = String(entry).trim().split('/');
  const family = isIP(address);
  const bits = prefix === undefined ? undefined : Number(prefix);
  const maxBits = family === 6 ? 128 : 32;
  if (family === 0 || extra !== undefined || (bits !== undefined && (!/^\d+$/.test(prefix) || bits > maxBits))) {
    throw invalidArgument(
      `${option}: ${JSON.stringify(entry)} is not an IP address, a CIDR range (e.g. 10.0.0.0/8, ::1) or unix`,
    );
  }
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) list.addAddress(address, type);
  else list.addSubnet(address, bits, type);
}

/** The IP rules of a list (null when it has none), and whether it names Unix clients. */
function compile(entries: readonly string[] | undefined, option: string): { ip: BlockList | null; unix: boolean } {
  let ip: BlockList | null = null;
  let unix = false;
  for (const entry of entries ?? []) {
    if (String(entry).trim().toLowerCase() === UNIX) {
      unix = true;
      continue;
    }
    addRule((ip ??= new BlockList()), entry, option);
  }
  return { ip, unix };
}

function matches(list: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * A ready access filter from allow and deny lists (built on `net.BlockList`). A client whose address is
 * denied, or not allowed when an allow list of IP rules is given, is refused with `-1`. Unix-socket clients
 * are let in unless `deny` contains `unix`. Entries are validated at once.
 * @example
 * mux.addAccessFilter(accessList({ allow: ['127.0.0.1', '10.0.0.0/8', '::1'], deny: ['10.0.0.13'] }));
 */
export function accessList(options: AccessListOptions): AccessFilter<object> {
  const allow = compile(options.allow, 'allow');
  const deny = compile(options.deny, 'deny');
  return (client) => {
    if (client.address === 'local') return deny.unix ? -1 : true;
    if (deny.ip !== null && matches(deny.ip, client.address)) return -1;
    if (allow.ip !== null && !matches(allow.ip, client.address)) return -1;
    return true;
  };
}
