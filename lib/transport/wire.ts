/**
 * The forwarder's wire format, version 1. Each batch is one JWT (JWS compact
 * serialisation) POSTed with this content type; its claims are `iat`, `exp`,
 * `jti` (unique per attempt), `v: 1`, `events` (AuthEvents as `onEvent` sees
 * them) and `dropped` (events this forwarder dropped since its last delivered
 * batch, so the hub can show losses it would otherwise never learn about).
 *
 * The hub keeps its own copy of these constants (lib/hub/ingest.ts) because
 * stages only import backwards; spec/hub.ingest.spec.ts checks both agree.
 */
export const BATCH_CONTENT_TYPE = 'application/jwt'

/** The JWS `typ` header: a token signed with the same key for another purpose is not a batch. */
export const BATCH_TYP = 'sqreen-auth-batch+jwt'

export const WIRE_VERSION = 1
