import type { AddressInfo } from 'node:net';

/** What every example's `start()` resolves with. */
interface Started {
  readonly mux: { destroy(): Promise<void> };
  readonly address: AddressInfo;
}

/**
 * Runs an example as a program: the port comes from the first argument or `PORT` (default 7777); Ctrl-C
 * (SIGINT) or SIGTERM closes every connection, then exits 0. Signals are handled from the start, so one that
 * comes while the server starts stops it cleanly too; a second one exits at once.
 * @param announce print `<name> listening on ...` (the events example prints its own from the `listening` event)
 * @param more a line to print after that one (the web chat's page address)
 */
export function runExample<T extends Started>(
  name: string,
  start: (options: { port: number }) => Promise<T>,
  announce = true,
  more?: (started: T) => string,
): void {
  const port = Number(process.argv[2] ?? process.env.PORT ?? 7777);
  const running = start({ port });
  const stop = (): void => void running.then(({ mux }) => mux.destroy()).then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  running.then(
    (started) => {
      const { address } = started;
      if (announce)
        console.log(
          `${name} listening on ${address.address} port ${address.port}; connect with: nc localhost ${address.port}`,
        );
      if (more !== undefined) console.log(more(started));
    },
    (error: Error) => {
      console.error(`${name}: ${error.message}`);
      process.exit(1);
    },
  );
}
