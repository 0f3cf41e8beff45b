/**
 * The cases of the benchmark, named as in the issue: `d:N:B` one dedicated sender to N receivers with
 * B-byte lines; `all:N:B` N clients that all send and all receive; `paced:N:B[:R]` one sender at R msgs/s
 * (default 1000) to N receivers; `mem:N` server memory per idle connection with N connections;
 * `hold:N` N concurrent clients held with broadcast working.
 */

export type BenchCase =
  | { readonly kind: 'dedicated'; readonly name: string; readonly receivers: number; readonly size: number }
  | { readonly kind: 'all'; readonly name: string; readonly clients: number; readonly size: number }
  | {
      readonly kind: 'paced';
      readonly name: string;
      readonly receivers: number;
      readonly size: number;
      readonly rate: number;
    }
  | { readonly kind: 'mem'; readonly name: string; readonly clients: number }
  | { readonly kind: 'hold'; readonly name: string; readonly clients: number };

export const DEFAULT_CASES =
  'd:10:64 d:10:1024 d:100:64 d:100:1024 d:1000:64 d:1000:1024 all:100:64 paced:100:64 mem:1000 hold:10000';

/** All-mode flow control, as in the measurements: 8 messages ahead at most, one per turn. */
export const ALL_WINDOW = 8;
export const ALL_BATCH = 1;

export function parseCase(text: string): BenchCase {
  const parts = text.split(':');
  const nums = parts.slice(1).map(Number);
  const bad = (): never => {
    throw new RangeError(`bad case ${text}: d:N:B, all:N:B, paced:N:B[:RATE], mem:N or hold:N`);
  };
  if (nums.some((n) => !Number.isInteger(n) || n <= 0)) bad();
  switch (parts[0]) {
    case 'd':
      if (nums.length !== 2) bad();
      return { kind: 'dedicated', name: text, receivers: nums[0], size: nums[1] };
    case 'all':
      if (nums.length !== 2 || nums[0] < 2) bad();
      return { kind: 'all', name: text, clients: nums[0], size: nums[1] };
    case 'paced':
      if (nums.length !== 2 && nums.length !== 3) bad();
      return { kind: 'paced', name: text, receivers: nums[0], size: nums[1], rate: nums[2] ?? 1000 };
    case 'mem':
      if (nums.length !== 1 || nums[0] < 2) bad();
      return { kind: 'mem', name: text, clients: nums[0] };
    case 'hold':
      if (nums.length !== 1) bad();
      return { kind: 'hold', name: text, clients: nums[0] };
    default:
      return bad();
  }
}

export function parseCases(text: string): BenchCase[] {
  return text
    .split(/[\s,]+/)
    .filter((word) => word !== '')
    .map(parseCase);
}

/** Cases measured on long-running servers, interleaved across peers (the others get a fresh server each). */
export function isThroughput(c: BenchCase): boolean {
  return c.kind === 'dedicated' || c.kind === 'all' || c.kind === 'paced';
}

/** Generator options of a case (besides host, port, protocol, server PID). */
export function generatorArgs(c: BenchCase, durationS: number): string[] {
  switch (c.kind) {
    case 'dedicated':
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.receivers),
        '--senders',
        '1',
        '--size',
        String(c.size),
        '--duration',
        String(durationS),
      ];
    case 'all':
      return [
        '--mode',
        'all',
        '--clients',
        String(c.clients),
        '--size',
        String(c.size),
        '--window',
        String(ALL_WINDOW),
        '--batch',
        String(ALL_BATCH),
        '--duration',
        String(durationS),
      ];
    case 'paced':
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.receivers),
        '--senders',
        '1',
        '--size',
        String(c.size),
        '--rate',
        String(c.rate),
        '--window',
        String(c.rate),
        '--duration',
        String(durationS),
      ];
    case 'mem':
      // The sender is one of the N connections: N-1 receivers + 1 sender.
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.clients - 1),
        '--senders',
        '1',
        '--size',
        '64',
        '--duration',
        '0',
        '--hold',
        '1',
      ];
    case 'hold':
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.clients),
        '--senders',
        '1',
        '--size',
        '64',
        '--duration',
        String(durationS),
        '--hold',
        '0.5',
        '--idle-timeout',
        '10',
      ];
  }
}

/** Connections a case opens. */
export function connectionsOf(c: BenchCase): number {
  switch (c.kind) {
    case 'dedicated':
    case 'paced':
      return c.receivers + 1;
    case 'all':
    case 'mem':
      return c.clients;
    case 'hold':
      return c.clients + 1;
  }
}

/** Above this many connections, peers that accept slowly are cut down (see PeerSpec.slowAccept). */
export const SLOW_ACCEPT_CONNECTIONS = 200;
