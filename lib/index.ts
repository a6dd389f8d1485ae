export type { TrackEventOptions } from './capture/sdk.js'
export type { DiagnosticsSnapshot } from './diagnostics.js'
export { SqreenAuthError, type SqreenAuthErrorCode } from './errors.js'
export type {
  AuthEvent,
  AuthEventType,
  FailureReason,
  Identity,
  Severity,
  StrategyAttempt,
  UserContextMode,
} from './event.js'
export { anonEmail } from './identity/anon-email.js'
export { type SqreenAuth, sqreenAuth } from './middleware.js'
export type { IdentifyResult, Logger, Options, PassportLike } from './options.js'
