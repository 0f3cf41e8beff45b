import { parseArgs } from 'node:util';

/** `--host H --port P` of the bench's own servers (defaults 127.0.0.1 and 7777). */
export function listenArgs(argv: string[] = process.argv.slice(2)): { host: string; port: number } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { host: { type: 'string' }, port: { type: 'string' } },
  });
  const port = Number(values.port ?? '7777');
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new RangeError(`--port must be 0..65535; got ${values.port}`);
  return { host: values.host ?? '127.0.0.1', port };
}

/** Prints the line the bench waits for. */
export function announce(name: string, host: string, port: number): void {
  process.stdout.write(`${name} listening on ${host}:${port}\n`);
}
