import type { Client } from '../../lib/client';
import { nextData, runDataFilters } from '../../lib/inbound/filter-chain';
import type { DataFilter, FilterResult } from '../../lib/types';

type State = Record<string, unknown>;
/** The filters under test never look at the client: any object stands for one. */
const client = { id: 1 } as unknown as Client<State>;
const text = (value: Buffer | null | Promise<Buffer | null>): string | null =>
  value === null ? null : (value as Buffer).toString();

/** A `failed` handler that records and lets the input through unchanged. */
function passing(): { failed: (error: unknown, input: Buffer) => Buffer | null; errors: unknown[] } {
  const errors: unknown[] = [];
  return {
    errors,
    failed: (error, input) => {
      errors.push(error);
      return input;
    },
  };
}

describe('nextData', () => {
  const current = Buffer.from('current');

  it('keeps the same Buffer for undefined', () => {
    expect(nextData(current, undefined)).toBe(current);
  });

  it('drops the data for null and false', () => {
    expect(nextData(current, null)).toBeNull();
    expect(nextData(current, false)).toBeNull();
  });

  it('turns a string into its UTF-8 bytes', () => {
    expect(nextData(current, 'héllo')).toEqual(Buffer.from('héllo', 'utf8'));
  });

  it('takes a Buffer as it is', () => {
    const other = Buffer.from('other');
    expect(nextData(current, other)).toBe(other);
  });

  it('takes a Uint8Array as a Buffer over the same memory, without a copy', () => {
    const backing = new Uint8Array([0, 104, 105, 0]);
    const view = backing.subarray(1, 3);
    const next = nextData(current, view as FilterResult) as Buffer;
    expect(Buffer.isBuffer(next)).toBe(true);
    expect(next.toString()).toBe('hi');
    backing[1] = 72;
    expect(next.toString()).toBe('Hi');
  });

  it('makes any other type an error with the code ERR_FILTER_RESULT that names what came', () => {
    for (const [value, named] of [
      [42, 'a number'],
      [true, 'a boolean'],
      [{}, 'a object'],
      [[1], 'an array'],
      [Symbol('s'), 'a symbol'],
    ] as const) {
      const result = nextData(current, value as unknown as FilterResult);
      expect(result).toBeInstanceOf(TypeError);
      expect((result as Error & { code?: string }).code).toBe('ERR_FILTER_RESULT');
      expect((result as Error).message).toContain(named);
    }
  });
});

describe('runDataFilters', () => {
  it('returns the data itself, synchronously, when there are no filters', () => {
    const data = Buffer.from('x');
    expect(runDataFilters([], data, client, passing().failed)).toBe(data);
  });

  it('runs the filters in registration order, each on the previous result', () => {
    const seen: string[] = [];
    const filters: DataFilter<State>[] = [
      (data) => {
        seen.push(data.toString());
        return `${data.toString()}1`;
      },
      (data) => {
        seen.push(data.toString());
        return undefined;
      },
      (data) => {
        seen.push(data.toString());
        return Buffer.from(`${data.toString()}3`);
      },
    ];
    expect(text(runDataFilters(filters, Buffer.from('m'), client, passing().failed))).toBe('m13');
    expect(seen).toEqual(['m', 'm1', 'm1']);
  });

  it('passes the client to every filter', () => {
    const filter = jest.fn<FilterResult, [Buffer, Client<State>]>(() => undefined);
    expect(runDataFilters([filter], Buffer.from('m'), client, passing().failed)).not.toBeNull();
    expect(filter).toHaveBeenCalledWith(expect.any(Buffer), client);
  });

  it('drops the data on null or false, and runs no filter after', () => {
    for (const drop of [null, false] as const) {
      const after = jest.fn();
      const result = runDataFilters([() => drop, after], Buffer.from('m'), client, passing().failed);
      expect(result).toBeNull();
      expect(after).not.toHaveBeenCalled();
    }
  });

  it('takes Uint8Array results as bytes for the next filter', () => {
    const filters: DataFilter<State>[] = [() => new Uint8Array([65, 66]) as FilterResult, (data) => `${data.length}`];
    expect(text(runDataFilters(filters, Buffer.from('m'), client, passing().failed))).toBe('2');
  });

  it("turns a result of another type into a failure: failed's value goes on to the next filter", () => {
    const { failed, errors } = passing();
    const filters: DataFilter<State>[] = [() => 7 as unknown as FilterResult, (data) => `${data.toString()}!`];
    expect(text(runDataFilters(filters, Buffer.from('m'), client, failed))).toBe('m!');
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error & { code: string }).code).toBe('ERR_FILTER_RESULT');
  });

  it("gives failed's value for a filter that throws, and the chain goes on", () => {
    const { failed, errors } = passing();
    const boom = new Error('boom');
    const filters: DataFilter<State>[] = [
      () => 'a',
      () => {
        throw boom;
      },
      (data) => `${data.toString()}c`,
    ];
    expect(text(runDataFilters(filters, Buffer.from('m'), client, failed))).toBe('ac');
    expect(errors).toEqual([boom]);
  });

  it('stops when failed drops the input', () => {
    const after = jest.fn();
    const filters: DataFilter<State>[] = [
      () => {
        throw new Error('closed');
      },
      after,
    ];
    expect(runDataFilters(filters, Buffer.from('m'), client, () => null)).toBeNull();
    expect(after).not.toHaveBeenCalled();
  });

  it('becomes asynchronous at the first async filter and keeps the order', async () => {
    const seen: string[] = [];
    const filters: DataFilter<State>[] = [
      (data) => {
        seen.push(`1:${data.toString()}`);
        return 'a';
      },
      async (data) => {
        seen.push(`2:${data.toString()}`);
        await Promise.resolve();
        return `${data.toString()}b`;
      },
      (data) => {
        seen.push(`3:${data.toString()}`);
        return `${data.toString()}c`;
      },
    ];
    const result = runDataFilters(filters, Buffer.from('m'), client, passing().failed);
    expect(result).toBeInstanceOf(Promise);
    expect(seen).toEqual(['1:m', '2:a']);
    expect(text(await result)).toBe('abc');
    expect(seen).toEqual(['1:m', '2:a', '3:ab']);
  });

  it("gives failed's value for an async filter that rejects or resolves to a bad type", async () => {
    const { failed, errors } = passing();
    const filters: DataFilter<State>[] = [
      () => Promise.reject(new Error('later')),
      () => Promise.resolve(12 as unknown as FilterResult),
      async (data) => `${data.toString()}.`,
    ];
    expect(text(await runDataFilters(filters, Buffer.from('m'), client, failed))).toBe('m.');
    expect(errors.map((error) => (error as Error).message)).toEqual([
      'later',
      expect.stringContaining('a number') as unknown as string,
    ]);
  });

  it('drops the data when an async filter resolves to null', async () => {
    const after = jest.fn();
    await expect(
      runDataFilters([() => Promise.resolve(null), after], Buffer.from('m'), client, passing().failed),
    ).resolves.toBeNull();
    expect(after).not.toHaveBeenCalled();
  });
});
