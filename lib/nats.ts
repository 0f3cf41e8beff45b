/**
 * `socket-multiplexer/nats`: the NATS bus, kept out of the core entry point so that only programs that use
 * it need `@nats-io/transport-node` installed (an optional peer dependency).
 */
export { NatsBus, type NatsBusOptions } from './bus/nats';
