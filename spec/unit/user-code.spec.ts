import { callGuarded, isPromiseLike, runChain } from '../../lib/core/user-code';

/** A Promise with its resolve and reject, to settle from the test. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

const never = (): boolean => false;
const noFailure = (error: unknown): never => {
  throw error;
};

describe('isPromiseLike', () => {
  it('is true for Promises and thenables, false for anything else', () => {
    expect(isPromiseLike(Promise.resolve(1))).toBe(true);
    expect(isPromiseLike({ then: () => undefined })).toBe(true);
    for (const value of [undefined, null, 0, 'then', {}, { then: 1 }, () => undefined]) {
      expect(isPromiseLike(value)).toBe(false);
    }
  });
});

describe('runChain', () => {
  it('stays synchronous while every step is, each step on the previous value', () => {
    const calls: string[] = [];
    const result = runChain<string>(
      3,
      'a',
      (index, value) => {
        calls.push(`${index}:${value}`);
        return `${value}${index}`;
      },
      never,
      noFailure,
    );
    expect(result).toBe('a012');
    expect(calls).toEqual(['0:a', '1:a0', '2:a01']);
  });

  it('returns the initial value when there are no steps', () => {
    expect(runChain<number>(0, 7, () => 0, never, noFailure)).toBe(7);
  });

  it('makes the rest asynchronous once a step returns a Promise, still in order', async () => {
    const calls: string[] = [];
    const gate = deferred<number>();
    const result = runChain<number>(
      3,
      1,
      (index, value) => {
        calls.push(`${index}:${value}`);
        return index === 1 ? gate.promise : value * 10;
      },
      never,
      noFailure,
    );
    expect(isPromiseLike(result)).toBe(true);
    expect(calls).toEqual(['0:1', '1:10']); // step 2 waits for step 1
    await Promise.resolve();
    expect(calls).toEqual(['0:1', '1:10']);
    gate.resolve(5);
    await expect(result).resolves.toBe(50);
    expect(calls).toEqual(['0:1', '1:10', '2:5']);
  });

  it('awaits thenables that are not Promises', async () => {
    const thenable: PromiseLike<number> = { then: (resolve) => Promise.resolve(4).then(resolve) };
    await expect(
      runChain<number>(2, 1, (index, value) => (index === 0 ? thenable : value + 1), never, noFailure),
    ).resolves.toBe(5);
  });

  it('ends early when stop says the value is final, synchronously', () => {
    const calls: number[] = [];
    const result = runChain<number>(
      5,
      0,
      (index) => {
        calls.push(index);
        return index === 1 ? -1 : index;
      },
      (value) => value < 0,
      noFailure,
    );
    expect(result).toBe(-1);
    expect(calls).toEqual([0, 1]);
  });

  it('ends early when an asynchronous step gives a final value', async () => {
    const calls: number[] = [];
    const result = runChain<number>(
      5,
      0,
      (index) => {
        calls.push(index);
        return index === 1 ? Promise.resolve(-1) : index;
      },
      (value) => value < 0,
      noFailure,
    );
    await expect(result).resolves.toBe(-1);
    expect(calls).toEqual([0, 1]);
  });

  it("goes on with failed's value when a step throws, and tells failed the error, index and input", () => {
    const failures: unknown[][] = [];
    const boom = new Error('boom');
    const result = runChain<string>(
      3,
      'x',
      (index, value) => {
        if (index === 1) throw boom;
        return `${value}${index}`;
      },
      never,
      (error, index, value) => {
        failures.push([error, index, value]);
        return `${value}!`;
      },
    );
    expect(result).toBe('x0!2');
    expect(failures).toEqual([[boom, 1, 'x0']]);
  });

  it("goes on with failed's value when a step's Promise rejects", async () => {
    const failures: unknown[][] = [];
    const result = runChain<string>(
      3,
      'x',
      (index, value) => (index === 0 ? Promise.reject(new Error('no')) : `${value}${index}`),
      never,
      (error, index, value) => {
        failures.push([(error as Error).message, index, value]);
        return 'recovered';
      },
    );
    await expect(result).resolves.toBe('recovered12');
    expect(failures).toEqual([['no', 0, 'x']]);
  });

  it("stops when failed's value is final", () => {
    const calls: number[] = [];
    const result = runChain<number | null>(
      3,
      1,
      (index) => {
        calls.push(index);
        throw new Error('drop');
      },
      (value) => value === null,
      () => null,
    );
    expect(result).toBeNull();
    expect(calls).toEqual([0]);
  });

  it('never lets a rejection escape: the chain resolves', async () => {
    const result = runChain<number>(
      2,
      0,
      () => Promise.reject(new Error('always')),
      never,
      () => 9,
    );
    await expect(result).resolves.toBe(9);
  });

  it('starts at `from`', () => {
    const calls: number[] = [];
    const result = runChain<number>(
      4,
      0,
      (index, value) => {
        calls.push(index);
        return value;
      },
      never,
      noFailure,
      2,
    );
    expect(result).toBe(0);
    expect(calls).toEqual([2, 3]);
  });
});

describe('callGuarded', () => {
  it('returns undefined for code that returns no Promise, and reports nothing', () => {
    const failed = jest.fn();
    let ran = false;
    expect(
      callGuarded(() => {
        ran = true;
        return 42;
      }, failed),
    ).toBeUndefined();
    expect(ran).toBe(true);
    expect(failed).not.toHaveBeenCalled();
  });

  it('routes what the code throws to failed and returns undefined', () => {
    const failed = jest.fn();
    const boom = new Error('boom');
    expect(
      callGuarded(() => {
        throw boom;
      }, failed),
    ).toBeUndefined();
    expect(failed).toHaveBeenCalledWith(boom);
  });

  it('returns a Promise that settles once the code has, resolving even when it rejects', async () => {
    const failed = jest.fn();
    const gate = deferred<string>();
    const running = callGuarded(() => gate.promise, failed);
    expect(running).toBeInstanceOf(Promise);
    gate.reject('nope');
    await expect(running).resolves.toBeUndefined();
    expect(failed).toHaveBeenCalledWith('nope');
  });

  it('resolves to undefined, whatever the code resolved with', async () => {
    const failed = jest.fn();
    await expect(callGuarded(() => Promise.resolve('value'), failed)).resolves.toBeUndefined();
    expect(failed).not.toHaveBeenCalled();
  });
});
