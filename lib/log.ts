import createDebug from 'debug';
import { formatWithOptions } from 'node:util';

/** The Tcl `logger` levels, lowest first: `debuglevel` logs its own level and everything above it. */
export const LOG_LEVELS = ['debug', 'info', 'notice', 'warn', 'error', 'critical'] as const;

/** One of the Tcl `logger` levels. */
export type LogLevel = (typeof LOG_LEVELS)[number];

type LogFunction = (format: string, ...args: unknown[]) => void;

/** `debug`'s own writer, as loaded: a user who replaced `debug.log` keeps theirs. */
const DEFAULT_WRITE = createDebug.log;
let stderrBroken = false;
let stderrWatched = false;

/**
 * Writes one log line to stderr, as `debug` does, but never takes the process down: once stderr's reader is
 * gone (a log collector that died: EPIPE), lines are dropped instead of throwing an uncaught error.
 */
function writeLine(this: unknown, ...args: unknown[]): void {
  if (createDebug.log !== DEFAULT_WRITE) {
    createDebug.log.apply(this, args);
    return;
  }
  if (stderrBroken) return;
  const stderr = process.stderr;
  if (!stderrWatched) {
    stderrWatched = true;
    // An asynchronous EPIPE arrives as an 'error' event: without a listener it would be thrown.
    stderr.on('error', () => {
      stderrBroken = true;
    });
  }
  try {
    stderr.write(`${formatWithOptions({ colors: Boolean(createDebug.inspectOpts?.colors) }, ...args)}\n`);
  } catch {
    stderrBroken = true;
  }
}

/**
 * One `debug` namespace per level and instance (`multiplexer:mp0:warn`).
 *
 * A level at or above the threshold is switched on through the logger's own `enabled` flag; below it the
 * user's `DEBUG` setting decides. `debug.enable()` is never called, so the user's other namespaces keep
 * whatever they had.
 */
export class Logger {
  private readonly loggers: Record<LogLevel, createDebug.Debugger>;
  private threshold: LogLevel = 'warn';

  constructor(readonly namespace: string) {
    const make = (level: LogLevel): createDebug.Debugger => {
      const logger = createDebug(`${namespace}:${level}`);
      logger.log = writeLine;
      return logger;
    };
    this.loggers = {
      debug: make('debug'),
      info: make('info'),
      notice: make('notice'),
      warn: make('warn'),
      error: make('error'),
      critical: make('critical'),
    };
  }

  /** The current threshold. */
  get level(): LogLevel {
    return this.threshold;
  }

  set level(level: LogLevel) {
    this.threshold = level;
    const rank = LOG_LEVELS.indexOf(level);
    for (const [index, name] of LOG_LEVELS.entries()) {
      const logger = this.loggers[name];
      logger.enabled = index >= rank || createDebug.enabled(logger.namespace);
    }
  }

  /** True when a message at `level` would be written: lets callers skip building costly messages. */
  enabled(level: LogLevel): boolean {
    return this.loggers[level].enabled;
  }

  readonly debug: LogFunction = (format, ...args) => this.write('debug', format, args);
  readonly info: LogFunction = (format, ...args) => this.write('info', format, args);
  readonly notice: LogFunction = (format, ...args) => this.write('notice', format, args);
  readonly warn: LogFunction = (format, ...args) => this.write('warn', format, args);
  readonly error: LogFunction = (format, ...args) => this.write('error', format, args);
  readonly critical: LogFunction = (format, ...args) => this.write('critical', format, args);

  private write(level: LogLevel, format: string, args: unknown[]): void {
    const logger = this.loggers[level];
    if (logger.enabled) logger(format, ...args);
  }
}

/**
 * A warning that may come many times a second (a frame shed per turn): the first of a quiet spell is written
 * at once, the rest summed and written once per `everyMs`.
 */
export class SummedWarning {
  private a = 0;
  private b = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly everyMs: number,
    private readonly write: (a: number, b: number) => void,
  ) {}

  /** Counts one occurrence of `a` and `b` (frames and messages, say). */
  add(a: number, b: number): void {
    if (this.timer === null) {
      this.write(a, b);
      this.arm();
      return;
    }
    this.a += a;
    this.b += b;
  }

  /** Writes what is summed now, and stops. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.emit();
  }

  /** Writes what is summed, if it is not nothing; true when it wrote. */
  private emit(): boolean {
    if (this.a === 0 && this.b === 0) return false;
    this.write(this.a, this.b);
    this.a = 0;
    this.b = 0;
    return true;
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.emit()) this.arm();
    }, this.everyMs);
    this.timer.unref();
  }
}
