/** Shared steps of the bus fault specs: a pair of buses on a channel, and waits on what they report. */
import type { Bus } from '../../lib';
import { type BusRecorder, openBus, settle, uniqueChannel } from '../contract/bus.contract';
import type { FaultProxy } from './fault-proxy';
import { delay, waitFor } from './net';

/**
 * How long a bus may take to say `up()` after its broker (or the path to it) is back. The carriers retry
 * within 600 ms and so come back well inside 2 s on an idle machine; the specs only wait generously, since
 * the CI machine's two cores are shared (the figure itself is measured outside the specs).
 */
export const UP_AFTER_RETURN_MS = 10_000;

/** Two or more opened buses on one fresh channel that hear each other. */
export async function openPair(make: (channel: string) => Bus[]): Promise<{ buses: Bus[]; recorders: BusRecorder[] }> {
  const buses = make(uniqueChannel('fault'));
  const recorders = await Promise.all(buses.map((bus) => openBus(bus)));
  await settle(buses, recorders);
  return { buses, recorders };
}

/** Waits until `recorder` reported a `down()` more than `before` times. */
export function waitDown(recorder: BusRecorder, before: number, what = 'down()', timeout = 10_000): Promise<void> {
  return waitFor(() => recorder.downs.length > before, what, timeout);
}

/** Waits until `recorder`'s last report is `up()`. */
export function waitUp(recorder: BusRecorder, what = 'up()', timeout = UP_AFTER_RETURN_MS): Promise<void> {
  return waitFor(() => recorder.isUp, what, timeout);
}

/** Publishes `text` once on `from` and waits until `to` heard it: both being up, it must get through. */
export async function expectCarried(from: Bus, to: BusRecorder, text: string): Promise<void> {
  await from.publish(Buffer.from(text));
  await waitFor(() => to.frames.some((frame) => frame.toString() === text), `${text} to arrive`);
}

/**
 * The first bus of `buses` reaches its broker through `proxy`, the second directly. Blackholes the proxy:
 * the first bus still says it is up and nothing crosses either way; its `reconnect()` reports `down()` at
 * once and it stays down while the path swallows everything (attempts time out); after the heal it is up
 * again, once, and carries both ways. Returns how long after the heal `up()` came, in ms.
 */
export async function expectBlackholeHealedByReconnect(
  proxy: FaultProxy,
  buses: readonly Bus[],
  recorders: readonly BusRecorder[],
): Promise<number> {
  const [cut, other] = recorders;
  proxy.blackhole();
  // Not awaited: a publish confirmed by a reply never is, into a path that swallows everything.
  void buses[0].publish(Buffer.from('into the hole')).catch(() => undefined);
  await publishOver(buses[1]);
  await delay(500);
  expect(cut.downs).toEqual([]); // no client notices a path that swallows everything
  expect(other.frames.some((frame) => frame.toString() === 'into the hole')).toBe(false);
  expect(cut.frames.some((frame) => frame.toString() === 'over the hole')).toBe(false);
  buses[0].reconnect?.();
  expect(cut.downs).toHaveLength(1); // at once
  await delay(2500); // two attempts or more, each swallowed
  expect(cut.isUp).toBe(false);
  const healed = Date.now();
  proxy.heal();
  await waitUp(cut, 'up() after the heal');
  const upAfter = Date.now() - healed;
  expect([cut.ups, cut.downs.length]).toEqual([2, 1]);
  expect(other.downs).toEqual([]);
  await expectCarried(buses[0], other, 'healed');
  await expectCarried(buses[1], cut, 'heard again');
  return upAfter;
}

async function publishOver(bus: Bus): Promise<void> {
  await bus.publish(Buffer.from('over the hole'));
}
