import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux the bench runs on). */
const TICKS_PER_SECOND = 100;

/** User + system CPU seconds of a process (all its threads), or -1 when it cannot be read. */
export function cpuSeconds(pid: number): number {
  if (!(pid > 0)) return -1;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces), from field 3 (state) on.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / TICKS_PER_SECOND : -1;
  } catch {
    return -1;
  }
}

/** Resident set size of a process in KiB (VmRSS), or -1 when it cannot be read. */
export function rssKiB(pid: number): number {
  if (!(pid > 0)) return -1;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? -1 : Number(match[1]);
  } catch {
    return -1;
  }
}
