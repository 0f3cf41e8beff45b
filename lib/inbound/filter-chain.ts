import { runChain } from '../core/user-code';
import { withCode } from '../errors';
import type { DataFilter, FilterResult } from '../types';
import type { Client } from '../client';

/**
 * What a filter's result means for the data: the same Buffer (unchanged), another one, or null (dropped).
 * A result of another type is an Error (the filter failed).
 */
export function nextData(current: Buffer, result: FilterResult): Buffer | null | Error {
  if (result === undefined) return current;
  if (result === null || result === false) return null;
  if (typeof result === 'string') return Buffer.from(result);
  const value: unknown = result; // JavaScript callers and casts can return anything
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return withCode(
    new TypeError(`a filter returned ${describeValue(value)}; expected a Buffer, a string, undefined, null or false`),
    'ERR_FILTER_RESULT',
  );
}

/**
 * Runs the data filters in registration order, each on the previous one's result; synchronous until one
 * returns a Promise. `failed` says what a failing filter's input becomes (unchanged, or dropped: null).
 */
export function runDataFilters<S extends object>(
  filters: readonly DataFilter<S>[],
  data: Buffer,
  client: Client<S>,
  failed: (error: unknown, input: Buffer) => Buffer | null,
): Buffer | null | Promise<Buffer | null> {
  return runChain<Buffer | null>(
    filters.length,
    data,
    (index, value) => {
      const input = value as Buffer;
      const result = filters[index](input, client);
      if (result instanceof Promise || (typeof result === 'object' && result !== null && 'then' in result)) {
        return Promise.resolve(result).then((resolved) => settle(input, resolved, failed));
      }
      return settle(input, result, failed);
    },
    (value) => value === null,
    (error, _index, value) => failed(error, value as Buffer),
  );
}

function settle(
  input: Buffer,
  result: FilterResult,
  failed: (error: unknown, input: Buffer) => Buffer | null,
): Buffer | null {
  const next = nextData(input, result);
  return next instanceof Error ? failed(next, input) : next;
}

function describeValue(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}
