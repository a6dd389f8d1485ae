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
export type {
  BatchKeyInput,
  EventSummary,
  HubJwtOptions,
  HubLimits,
  HubOptions,
  Principal,
  ScorePoint,
  SqreenHub,
  SqreenHubOptions,
  UserDetail,
  UserRow,
} from './hub/index.js'
export { sqreenHub } from './hub/index.js'
export { anonEmail } from './identity/anon-email.js'
export { type SqreenAuth, sqreenAuth } from './middleware.js'
export type { EmailOptions } from './notify/email.js'
export type { FetchLike } from './notify/http.js'
export { signWebhook, type VerifyWebhookOptions, verifyWebhook } from './notify/webhook.js'
export type { IdentifyResult, Logger, Options, OptionsInput, PassportLike, SqreenAuthOptions } from './options.js'
export type { AlertDetection, RiskAlert } from './risk/alert.js'
export type { RiskSnapshot } from './risk/ledger.js'
export { DEFAULT_POINTS, type Detection } from './risk/points.js'
export { type RiskIncreaseOptions, type RiskTrigger, riskIncrease } from './risk/trigger.js'
export { MemoryStore, type MemoryStoreOptions } from './store/memory.js'
export {
  type RedisClient,
  RedisStore,
  type RedisStoreOptions,
  type RedisStoreState,
  type RedisStoreStats,
  RedisStoreUnavailableError,
} from './store/redis.js'
export type {
  HitResult,
  LedgerEntry,
  RememberResult,
  ScoredEntry,
  ScoreResult,
  Store,
  StoreOp,
  StoreResult,
  Threshold,
} from './store/store.js'
// For custom Store implementations: the contract's caps on a window's hits and distinct members.
export { DISTINCT_CAP, WINDOW_CAP } from './store/store.js'
export type { ForwardOptions } from './transport/forwarder.js'
export type { ForwardKeyInput } from './transport/keys.js'
