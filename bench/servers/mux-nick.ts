/**
 * A chat server on the library: line framing and a data filter that rewrites every line with the sender's
 * nick (`u<id>: <line>`), the way a chat filter is usually written (strings in, string out).
 * Usage: node dist/bench/servers/mux-nick.js --host 127.0.0.1 --port N
 */
import { Multiplexer } from '../../lib';
import { announce, listenArgs } from './args';

interface ChatState {
  nick: string;
}

const { host, port } = listenArgs();
const mux = new Multiplexer<ChatState>({ framing: 'line' });
mux.on('connect', (client) => {
  client.state.nick = `u${client.id}`;
});
mux.addFilter((line, client) => `${client.state.nick ?? 'anon'}: ${line}`);

mux.listen({ host, port }).then(
  () => announce('mux-nick', host, port),
  (error: unknown) => {
    process.stderr.write(`mux-nick: ${String(error)}\n`);
    process.exit(1);
  },
);
const stop = (): void => {
  void mux.destroy({ timeout: 1000 }).then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
