/**
 * The one way user code (filters, hooks, listeners) is run: synchronously until it returns a Promise, in
 * order, and whatever it throws or rejects goes to the caller's `failed` handler, never up the stack.
 */

/** True for anything with a `then` method: what user code may return instead of a value. */
export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/**
 * Runs `count` steps in order, each on the previous one's value, until `stop` says the value is final.
 * Stays synchronous while every step does; once one returns a Promise, the rest run after it settles and the
 * result is a Promise. A step that throws or rejects gives `failed`'s value instead.
 *
 * @param step step `index` applied to `value`
 * @param stop true when `value` ends the chain early (a denial, a dropped message)
 * @param failed the value to go on with when step `index` threw or rejected `error` on `value`
 */
export function runChain<T>(
  count: number,
  initial: T,
  step: (index: number, value: T) => T | PromiseLike<T>,
  stop: (value: T) => boolean,
  failed: (error: unknown, index: number, value: T) => T,
  from = 0,
): T | Promise<T> {
  let value = initial;
  for (let index = from; index < count; index += 1) {
    let result: T | PromiseLike<T>;
    try {
      result = step(index, value);
    } catch (error) {
      result = failed(error, index, value);
    }
    if (isPromiseLike(result)) {
      const input = value;
      const at = index;
      return Promise.resolve(result)
        .then(undefined, (error: unknown) => failed(error, at, input))
        .then((next) => (stop(next) ? next : runChain(count, next, step, stop, failed, at + 1)));
    }
    value = result;
    if (stop(value)) return value;
  }
  return value;
}

/**
 * Calls user code whose result does not matter; what it throws, or what a Promise it returns rejects with,
 * goes to `failed`.
 * @returns the Promise it returned, settled either way, or undefined when it returned no Promise
 */
export function callGuarded(fn: () => unknown, failed: (error: unknown) => void): Promise<void> | undefined {
  try {
    const result = fn();
    if (isPromiseLike(result)) return Promise.resolve(result).then(() => undefined, failed);
  } catch (error) {
    failed(error);
  }
  return undefined;
}
