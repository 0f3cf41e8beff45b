/** Error codes the library attaches to the errors it throws or reports. */
export type ErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_UNKNOWN_CONFIG_KEY'
  | 'ERR_ALREADY_LISTENING'
  | 'ERR_DESTROYED'
  | 'ERR_LISTEN'
  | 'ERR_LINE_TOO_LONG';

/** Attaches a `code` to an error, the way Node's own errors carry one. */
export function withCode<E extends Error>(error: E, code: ErrorCode): E & { code: ErrorCode } {
  return Object.assign(error, { code });
}

/** A TypeError for a bad argument, option or config value. */
export function invalidArgument(
  message: string,
  code: ErrorCode = 'ERR_INVALID_OPTION',
): TypeError & { code: ErrorCode } {
  return withCode(new TypeError(message), code);
}

/** Turns anything thrown by user code into an Error without losing it. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(`non-error thrown: ${String(thrown)}`);
}
