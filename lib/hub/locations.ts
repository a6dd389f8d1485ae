import { SESSION_COOKIE } from './auth.js'

/*
 * Where a browser finds the hub. The router knows the path it is mounted at in the
 * application (`req.baseUrl`), not the path the browser used: a proxy may serve the hub
 * under another one (nginx's `location /security/ { proxy_pass http://app:3000/hub/; }`,
 * a Kubernetes ingress's rewrite-target). Links and redirects built from `req.baseUrl`
 * sent the browser to `/hub/...`, which the proxy does not serve, and the session cookie's
 * `Path=/hub` was never sent back to `/security/`: no sign-in could last. So links and
 * redirects are relative to the page answered, and the cookie gets no `Path`: the browser
 * then scopes it to the directory of the sign-in URL it posted to (RFC 6265, 5.1.4), which
 * is the hub's root as the browser sees it, whatever the proxy did.
 */

/**
 * The hub's root relative to the page at `path` (the path within the router, `req.path`):
 * `.` for `/` and `/login`, `..` for `/users/<key>`, one `..` per directory below the root.
 * A user key's `/` is `%2F` in the path, so it never counts as a directory.
 */
export const hubRoot = (path: string): string => {
  let depth = 0
  for (let i = 1; i < path.length; i++) if (path.charCodeAt(i) === 0x2f) depth++
  if (depth === 0) return '.'
  let root = '..'
  for (let i = 1; i < depth; i++) root += '/..'
  return root
}

/**
 * The path part of the URL as the application received it ends with `/`: the root page
 * must be answered from `/hub/`, not `/hub`, or relative links would resolve against the
 * application's root (`./static/hub.css` from `/hub` is `/static/hub.css`).
 */
export const endsWithSlash = (originalUrl: string): boolean => {
  const q = originalUrl.indexOf('?')
  const path = q === -1 ? originalUrl : originalUrl.slice(0, q)
  return path.endsWith('/')
}

const attributes = (secure: boolean): string => `; HttpOnly${secure ? '; Secure' : ''}; SameSite=Strict`

/**
 * The session cookie, without `Path` (see the note at the top). Written by hand because
 * Express's `res.cookie` always sets one (`/` by default). The value is a 43-character
 * base64url session id: nothing to encode.
 */
export const sessionCookie = (value: string, maxAgeMs: number, secure: boolean, now = Date.now()): string =>
  `${SESSION_COOKIE}=${value}; Max-Age=${Math.floor(maxAgeMs / 1000)}; Expires=${new Date(now + maxAgeMs).toUTCString()}${attributes(secure)}`

/** Clears the session cookie set by `sessionCookie`: same name, same (default) path. */
export const clearedSessionCookie = (secure: boolean): string =>
  `${SESSION_COOKIE}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT${attributes(secure)}`
