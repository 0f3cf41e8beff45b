/**
 * Child process of the "user code that fails" spec: a multiplexer in which every hook and every listener
 * throws or rejects. It counts what reaches the process-level handlers (uncaughtException,
 * unhandledRejection) instead of crashing, so the spec can tell exactly what escaped.
 *
 * Hook behaviour is chosen by the data (line framing) or by the client's source address:
 * - data filters: `throw-sync` throws an Error, `throw-string` throws a string, `reject-async` rejects;
 * - the broadcast method throws for `broadcast-throw`;
 * - access filters: 127.0.0.2 throws, 127.0.0.3 rejects, 127.0.0.4 resolves to -1, others are let in;
 * - exit filters: one throws, one rejects; every listener throws, and those of `data` and `exit` reject too.
 */
import { Multiplexer, type Client } from '../../lib';

export type HostileReport =
  | { type: 'listening'; port: number }
  | {
      type: 'stats';
      filterErrors: number;
      hookErrors: number;
      errorSources: string[];
      denials: Record<string, number>;
      disconnects: Record<string, number>;
      limits: Record<string, number>;
      escaped: string[];
    }
  | { type: 'destroyed'; escaped: string[] };

export type HostileCommand = { cmd: 'stats' } | { cmd: 'destroy' };

const escaped: string[] = [];
process.on('uncaughtException', (error) => escaped.push(`uncaughtException: ${error.message}`));
process.on('unhandledRejection', (reason) => escaped.push(`unhandledRejection: ${String(reason)}`));

function report(message: HostileReport): void {
  process.send?.(message);
}

class HostileMultiplexer extends Multiplexer {
  protected override broadcast(message: Buffer, sender: Client): void {
    if (message.includes('broadcast-throw')) throw new Error('broadcast override failed');
    super.broadcast(message, sender);
  }
}

const later = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const mux = new HostileMultiplexer({
    framing: 'line',
    maxMessageBytes: 64,
    lineOverflow: 'discard',
    debugLevel: 'critical',
  });
  const errorSources: string[] = [];

  mux.addFilter((data) => {
    if (data.includes('throw-sync')) throw new Error('filter failed');
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- user code may throw anything
    if (data.includes('throw-string')) throw 'a string, not an Error';
    return undefined;
  });
  mux.addFilter(async (data) => {
    await later(1);
    if (data.includes('reject-async')) throw new Error('async filter failed');
    return undefined;
  });
  mux.addAccessFilter((client) => {
    if (client.address === '127.0.0.2') throw new Error('access filter failed');
    return true;
  });
  mux.addAccessFilter(async (client) => {
    await later(1);
    if (client.address === '127.0.0.3') throw new Error('async access filter failed');
    return client.address === '127.0.0.4' ? -1 : true;
  });
  mux.addExitFilter(() => {
    throw new Error('exit filter failed');
  });
  mux.addExitFilter(async () => {
    await later(1);
    throw new Error('async exit filter failed');
  });

  const fail = (what: string) => (): never => {
    throw new Error(`${what} listener failed`);
  };
  mux.on('listening', fail('listening'));
  mux.on('connect', fail('connect'));
  mux.on('data', fail('data'));
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- an async listener is what this tests
  mux.on('data', async () => {
    await later(1);
    throw new Error('async data listener failed');
  });
  mux.on('exit', fail('exit'));
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- a rejecting listener is what this tests
  mux.on('exit', () => Promise.reject(new Error('async exit listener failed')));
  mux.on('deny', fail('deny'));
  mux.on('limit', fail('limit'));
  mux.on('close', fail('close'));
  mux.on('error', (_error, context) => {
    errorSources.push(context.source);
  });
  mux.on('error', fail('error'));
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- a rejecting listener is what this tests
  mux.on('error', () => Promise.reject(new Error('async error listener failed')));

  const address = await mux.listen({ port: 0, host: '0.0.0.0' });
  if (typeof address === 'string') throw new Error('expected TCP');
  report({ type: 'listening', port: address.port });

  process.on('message', (message: HostileCommand) => {
    if (message.cmd === 'stats') {
      const stats = mux.stats();
      report({
        type: 'stats',
        filterErrors: stats.filterErrors,
        hookErrors: stats.hookErrors,
        errorSources: [...new Set(errorSources)].sort(),
        denials: stats.denials,
        disconnects: stats.disconnects,
        limits: stats.limits,
        escaped,
      });
    }
    if (message.cmd === 'destroy') {
      mux.destroy({ timeout: 500 }).then(
        () => later(100).then(() => report({ type: 'destroyed', escaped })),
        (error: unknown) => report({ type: 'destroyed', escaped: [...escaped, `destroy rejected: ${String(error)}`] }),
      );
    }
  });
}

process.on('disconnect', () => process.exit(0));
main().catch((error: unknown) => {
  escaped.push(`main failed: ${String(error)}`);
  report({ type: 'destroyed', escaped });
});
