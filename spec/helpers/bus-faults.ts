/** Shared steps of the bus fault specs: a pair of buses on a channel, and waits on what they report. */
import type { Bus } from '../../lib';
import { type BusRecorder, openBus, settle, uniqueChannel } from '../contract/bus.contract';
import { waitFor } from './net';

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
