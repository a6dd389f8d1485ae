export { sqreenAuth, type SqreenAuth } from './middleware.js'
export { anonEmail } from './identity/anon-email.js'
export { SqreenAuthError, type SqreenAuthErrorCode } from './errors.js'
export { MemoryStore, type MemoryStoreOptions } from './store/memory.js'
export { riskIncrease, type RiskIncreaseOptions, type RiskTrigger } from './risk/trigger.js'
export { DEFAULT_POINTS, type Detection } from './risk/points.js'
export { verifyWebhook, signWebhook, type VerifyWebhookOptions } from './notify/webhook.js'
export type { TrackEventOptions } from './capture/sdk.js'
export type { DiagnosticsSnapshot } from './diagnostics.js'
export type { Options, Logger, PassportLike, IdentifyResult } from './options.js'
export type { RiskAlert, AlertDetection } from './risk/alert.js'
export type { RiskSnapshot } from './risk/ledger.js'
export type { EmailOptions } from './notify/email.js'
export type { FetchLike } from './notify/http.js'
export type {
  Store,
  StoreOp,
  StoreResult,
  LedgerEntry,
  HitResult,
  RememberResult,
  ScoreResult,
  ScoredEntry,
  Threshold,
} from './store/store.js'
export type {
  AuthEvent,
  AuthEventType,
  FailureReason,
  Identity,
  Severity,
  StrategyAttempt,
  UserContextMode,
} from './event.js'
