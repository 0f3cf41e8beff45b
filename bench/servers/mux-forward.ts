/**
 * The library with a forward filter registered that keeps the shared bytes (`() => undefined`), a peer of
 * the benchmark's `fwd:N:B` case: raw framing and default settings as the CLI (`mux`), so the difference
 * is the forward filter, called for every delivery.
 * Usage: node dist/bench/servers/mux-forward.js --host 127.0.0.1 --port N
 */
import { Multiplexer } from '../../lib';
import { announce, listenArgs } from './args';

const { host, port } = listenArgs();
const mux = new Multiplexer({ framing: 'raw' });
mux.addForwardFilter(() => undefined);

mux.listen({ host, port }).then(
  () => announce('mux-forward', host, port),
  (error: unknown) => {
    process.stderr.write(`mux-forward: ${String(error)}\n`);
    process.exit(1);
  },
);
const stop = (): void => {
  void mux.destroy({ timeout: 1000 }).then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
