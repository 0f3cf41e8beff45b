/**
 * The error catalogue: every code the library attaches to an error it throws, rejects with or reports,
 * with what it means. The README lists the same table.
 */
export const ERROR_CODES = {
  ERR_INVALID_OPTION: 'an option, argument or config value is invalid (TypeError or RangeError)',
  ERR_UNKNOWN_CONFIG_KEY: 'config() was given a key that names no setting',
  ERR_ALREADY_LISTENING: 'listen() was called while already listening',
  ERR_DESTROYED: 'the multiplexer was destroyed, or is shutting down',
  ERR_LISTEN: 'a listener could not start (the code of the system error is kept when there is one)',
  ERR_LINE_TOO_LONG: 'a client sent a message longer than maxMessageBytes',
  ERR_MESSAGE_TIMEOUT: 'a client began a message and did not finish it within messageTimeout',
  ERR_SEND_TIMEOUT: 'a client took no bytes for sendTimeout while data waited for it',
  ERR_MEMORY_BUDGET: 'the process-wide memoryBudget was reached and this client held the most',
  ERR_PROTOCOL: 'a client broke its transport protocol (TLS renegotiation, a malformed WebSocket frame)',
  ERR_PING_TIMEOUT: 'a WebSocket client did not answer a ping within pingInterval',
  ERR_USER_CODE: 'a filter, hook or listener threw or rejected with something that is not an Error',
  ERR_FILTER_RESULT: 'a data or forward filter returned a value of a type it may not return',
  ERR_BUS_OPEN: 'a bus was opened twice',
  ERR_BUS_CLOSED: 'a bus was used while closed or not open',
  ERR_BUS_DOWN: 'the bus lost its connection or subscription',
  ERR_BUS_FRAME_TOO_LARGE: 'a message does not fit in one frame of the bus',
  ERR_BUS_LOSS: 'frames from another node were lost on the bus',
} as const;

/** Error codes the library attaches to the errors it throws or reports. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** An Error with a catalogue code, the way Node's own errors carry one. */
export type CodedError<E extends Error = Error> = E & { code: ErrorCode };

/** Attaches a `code` to an error. */
export function withCode<E extends Error>(error: E, code: ErrorCode): CodedError<E> {
  return Object.assign(error, { code });
}

/** A TypeError for a bad argument, option or config value. */
export function invalidArgument(message: string, code: ErrorCode = 'ERR_INVALID_OPTION'): CodedError<TypeError> {
  return withCode(new TypeError(message), code);
}

/** Turns anything thrown by user code into an Error without losing it. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return withCode(new Error(`non-error thrown: ${String(thrown)}`), 'ERR_USER_CODE');
}
