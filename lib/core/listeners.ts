import { isPromiseLike } from './user-code';

/** A listener, as eventemitter3 stores it. */
type Listener = (...args: never[]) => unknown;

/**
 * Listeners are user code too: each is wrapped so that what it throws or rejects is reported instead of
 * escaping into the code that emitted (eventemitter3 lets it escape). The wrapper of a function for an event
 * is made once, so `off()` finds it, and `listeners()` maps wrappers back to the functions given to `on()`.
 */
export class ListenerGuard {
  private readonly wrappers = new WeakMap<Listener, Map<string, Listener>>();
  private readonly originals = new WeakMap<Listener, Listener>();

  constructor(private readonly failed: (event: string, error: unknown) => void) {}

  /** The guarded wrapper of `fn` for `event`. */
  wrap<F>(event: string | symbol, fn: F): F {
    const key = String(event);
    const original = fn as unknown as Listener;
    let byEvent = this.wrappers.get(original);
    const known = byEvent?.get(key);
    if (known !== undefined) return known as unknown as F;
    const failed = this.failed;
    const onRejected = (error: unknown): void => failed(key, error);
    // A plain function: eventemitter3 calls it with the context given to on(), or the emitter.
    const guarded = function (this: unknown, ...args: never[]): void {
      try {
        const result = original.apply(this, args);
        if (isPromiseLike(result)) result.then(undefined, onRejected);
      } catch (error) {
        failed(key, error);
      }
    };
    if (byEvent === undefined) {
      byEvent = new Map();
      this.wrappers.set(original, byEvent);
    }
    byEvent.set(key, guarded);
    this.originals.set(guarded, original);
    return guarded as unknown as F;
  }

  /** The wrapper registered for `fn` and `event`, or `fn` itself when it has none. */
  wrapperOf<F>(event: string | symbol, fn: F): F {
    const known = this.wrappers.get(fn as unknown as Listener)?.get(String(event));
    return (known ?? fn) as F;
  }

  /** The function given to `on()` for a registered wrapper. */
  originalOf<F>(fn: F): F {
    return (this.originals.get(fn as unknown as Listener) ?? fn) as F;
  }
}
