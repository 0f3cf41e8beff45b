import { ensureBuilt } from './build';

/**
 * Jest globalSetup: compiles dist/ once before any spec runs, when it is missing or older than lib/ or
 * examples/, so the CLI specs spawn the current code and no worker pays for the build inside a test's timeout.
 */
export default function globalSetup(): void {
  ensureBuilt();
}
