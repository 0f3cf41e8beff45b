export { Multiplexer } from './multiplexer';
export type {
  AccessDecision,
  AccessFilter,
  DataFilter,
  DenyReason,
  DestroyOptions,
  ErrorContext,
  ExitFilter,
  FilterResult,
  LimitKind,
  ListenOptions,
  MultiplexerEvents,
  MultiplexerStats,
} from './multiplexer';
export { Client, type ExitReason } from './client';
export {
  lineFraming,
  rawFraming,
  LineDecoder,
  type Decoder,
  type DecoderLimits,
  type Framing,
  type MessageSink,
} from './framing';
export {
  DEFAULTS,
  SETTING_KEYS,
  type MultiplexerOptions,
  type Settings,
  type SettingKey,
  type SlowConsumerPolicy,
  type LineOverflowPolicy,
  type RateLimitAction,
  type FilterErrorPolicy,
} from './options';
export { LOG_LEVELS, type LogLevel } from './log';
export { ERROR_CODES, type ErrorCode, type CodedError } from './errors';
export type { Bus, BusListener } from './bus/bus';
export { MemoryBus, MemoryHub } from './bus/memory';
export { accessList, type AccessListOptions } from './access';
