import { assertFraming, type Framing } from './framing';
import { lineFraming } from './line';
import { rawFraming } from './raw';

export * from './framing';
export { LineDecoder, lineFraming } from './line';
export { rawFraming } from './raw';

/** Resolves the `framing` option. */
export function resolveFraming(framing: 'raw' | 'line' | Framing | undefined): Framing {
  if (framing === undefined || framing === 'raw') return rawFraming;
  if (framing === 'line') return lineFraming;
  return assertFraming(framing);
}
