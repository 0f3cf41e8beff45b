import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The repository root. */
export const ROOT = join(__dirname, '..', '..');
/** The compiled CLI that end-to-end specs run as a child process. */
export const CLI = join(ROOT, 'dist', 'lib', 'cli.js');

const LOCK = join(ROOT, 'dist', '.spec-build-lock');
const STALE_LOCK_MS = 120_000;

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** True when dist/lib/cli.js is missing or older than a source file of lib/. */
function outdated(): boolean {
  const built = mtime(CLI);
  if (built < 0) return true;
  const lib = join(ROOT, 'lib');
  return readdirSync(lib).some((name) => name.endsWith('.ts') && mtime(join(lib, name)) > built);
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Compiles the library (`tsc -p tsconfig.build.json`) when dist/lib is missing or older than lib/, so that
 * CLI specs never run yesterday's code. Jest workers that get here together build once: a lock directory
 * makes the others wait.
 */
export function ensureBuilt(): void {
  if (!outdated()) return;
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  const deadline = Date.now() + STALE_LOCK_MS;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      if (Date.now() - mtime(LOCK) > STALE_LOCK_MS) {
        rmdirSync(LOCK);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another build holds ${LOCK}`);
      sleep(200);
      if (!outdated()) return;
    }
  }
  try {
    if (!outdated()) return;
    try {
      execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
        cwd: ROOT,
        stdio: 'pipe',
        timeout: 120_000,
      });
    } catch (error) {
      // tsc still emits when another part of the project (examples, bench) has type errors; only a
      // missing CLI is fatal here.
      if (mtime(CLI) < 0) throw error;
    }
  } finally {
    rmdirSync(LOCK);
  }
}
