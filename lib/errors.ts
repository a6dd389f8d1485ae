/**
 * Every error this package throws is a `SqreenAuthError` with a stable `code`,
 * so applications and tests can branch on the code instead of the wording.
 * Errors are only thrown at setup (bad options) or by pure helpers such as
 * `anonEmail`; nothing on the request path throws into the application.
 */
export type SqreenAuthErrorCode =
  | 'ERR_SQREEN_OPTIONS'
  | 'ERR_SQREEN_UNKNOWN_OPTION'
  | 'ERR_SQREEN_OPTION_TYPE'
  | 'ERR_SQREEN_MODE'
  | 'ERR_SQREEN_IDENTIFY_REQUIRED'
  | 'ERR_SQREEN_SECRET'
  | 'ERR_SQREEN_PASSPORT'
  | 'ERR_SQREEN_WATCH'
  | 'ERR_SQREEN_ANON_EMAIL'
  | 'ERR_SQREEN_WEBHOOK_SIGNATURE'
  | 'ERR_SQREEN_EMAIL'
  | 'ERR_SQREEN_URL'
  | 'ERR_SQREEN_FORWARD_KEY'
  | 'ERR_SQREEN_HUB_KEY'
  | 'ERR_SQREEN_HUB_AUTH'
  | 'ERR_SQREEN_HUB_EXPRESS'

export class SqreenAuthError extends Error {
  readonly code: SqreenAuthErrorCode

  constructor(code: SqreenAuthErrorCode, message: string) {
    super(message)
    this.name = 'SqreenAuthError'
    this.code = code
  }
}
