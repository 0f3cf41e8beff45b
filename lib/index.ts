export { Multiplexer, type MultiplexerEvents, type MultiplexerStats, type SendOptions } from './multiplexer';
export type {
  AccessDecision,
  AccessFilter,
  BoundAddress,
  DataFilter,
  DenyReason,
  DestroyOptions,
  ErrorContext,
  ErrorSource,
  ExitFilter,
  ExitReason,
  FilterResult,
  ForwardFilter,
  ForwardResult,
  LimitKind,
  ListenOptions,
  Sender,
  Target,
} from './types';
export { DENY_REASONS, EXIT_REASONS, LIMIT_KINDS } from './types';
export { Client, type RemoteClient } from './client';
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
  type TlsServerOptions,
} from './options';
export { LOG_LEVELS, type LogLevel } from './log';
export { ERROR_CODES, type ErrorCode, type CodedError } from './errors';
export { accessList, type AccessListOptions } from './admission/access';
export type {
  Connection,
  ConnectionOwner,
  Transport,
  TransportHost,
  TransportKind,
  Codec,
} from './transport/connection';
export type { Bus, BusListener } from './bus/bus';
export { MemoryBus, MemoryHub } from './bus/memory';
export { busFromUrl } from './bus/from-url';
