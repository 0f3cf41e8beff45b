import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The repository root. */
export const ROOT = join(__dirname, '..', '..');
/** The compiled CLI that end-to-end specs run as a child process. */
export const CLI = join(ROOT, 'dist', 'lib', 'cli.js');

/** Taken by whoever builds, so that jest workers never build dist/ at once. */
const LOCK = join(ROOT, 'dist', '.spec-build-lock');
const STALE_LOCK_MS = 120_000;

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** The newest modification time of the .ts files in `dir` and its subdirectories (lib/transport, ...). */
function newestSource(dir: string): number {
  let newest = -1;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, mtime(path));
  }
  return newest;
}

/** True when one of `outputs` is missing or older than a source file of lib/ or examples/. */
function outdated(outputs: readonly string[]): boolean {
  const sources = Math.max(newestSource(join(ROOT, 'lib')), newestSource(join(ROOT, 'examples')));
  return outputs.some((file) => mtime(file) < sources);
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Compiles lib/ and examples/ (`tsc -p tsconfig.build.json`, as `npm run build` does) when one of `outputs`
 * is missing or older than their sources, so that specs never run yesterday's code. Jest workers that get
 * here together build once: a lock directory makes the others wait. tsc still emits when another part of the
 * project (bench) has type errors; only an output that is still missing afterwards is fatal.
 */
export function ensureBuilt(outputs: readonly string[] = [CLI]): void {
  if (!outdated(outputs)) return;
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  const deadline = Date.now() + STALE_LOCK_MS;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      // A lock left behind by a killed run is taken over (one that vanished meanwhile is simply tried again).
      const held = mtime(LOCK);
      if (held >= 0 && Date.now() - held > STALE_LOCK_MS) {
        rmdirSync(LOCK);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another build holds ${LOCK}`);
      sleep(200);
      if (!outdated(outputs)) return;
    }
  }
  try {
    if (!outdated(outputs)) return;
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
    const missing = outputs.filter((file) => mtime(file) < 0);
    if (missing.length > 0)
      throw new Error(
        `build failed (exit ${result.status}), missing ${missing.join(', ')}:\n${result.stdout}${result.stderr}`,
      );
  } finally {
    rmdirSync(LOCK);
  }
}
