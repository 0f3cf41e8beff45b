import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | null = null;

/**
 * What this process still holds in JavaScript objects and Buffers after full garbage collections: heap used
 * plus ArrayBuffer memory. Compare two readings to see what a server retains for its clients.
 */
export function retainedBytes(): number {
  if (collect === null) {
    // gc() is only given to contexts created after the flag is set.
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
  collect();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}
