// The `sqreen-auth/hub` entry point: the Security Hub alone (the package root exports it too).
export type { Principal } from './auth.js'
export type { BatchKeyInput, HubJwtOptions, HubLimits, HubOptions, SqreenHubOptions } from './options.js'
export type { ScorePoint, UserDetail, UserRow } from './queries.js'
export { type SqreenHub, sqreenHub } from './router.js'
export type { EventSummary } from './views.js'
