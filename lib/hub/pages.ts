import type { DiagnosticsSnapshot } from '../diagnostics.js'
import { eventTime, type Identity } from '../event.js'
import { detectionLabel, visible } from '../notify/format.js'
import type { RiskAlert } from '../risk/alert.js'
import { wellFormed } from '../well-formed.js'
import type { ScorePoint, UserDetail, UserRow } from './queries.js'

/**
 * Server-rendered dashboard pages. Every value that reaches HTML goes through
 * `esc` (user keys, identities, user agents and strategy names are chosen by
 * whoever sends logins), and pages hold no inline script, event handler or
 * style attribute, so they work under helmet's default Content-Security-Policy
 * (`script-src 'self'`, `script-src-attr 'none'`); scripts and styles are files
 * served by the router.
 */

export const esc = (value: unknown): string =>
  // Controls and format characters first: a login of `\u202emoc.elpmaxe@ecila` displayed as
  // alice@example.com, and `ali\u200bce@example.com` as well (see `visible`); then markup.
  visible(String(value)).replace(
    /[&<>"'`]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' })[c] as string,
  )

/** Where browsers reach the hub: its `publicPath`, else where the router is mounted (`req.baseUrl`). */
export interface PageContext {
  readonly base: string
  readonly subject?: string
}

/**
 * A user's page. The key goes in the query, not in the path: a proxy that forwards to a path
 * (nginx's `proxy_pass` with a URI) decodes the path before forwarding it, so a key with a `/`
 * (`%2F`) became two segments and its page could not be reached (or a key ending in `/` was
 * another user's page); a query string is forwarded as it is.
 */
// Well-formed first: `encodeURIComponent` throws on a lone surrogate, and one user key with it
// (a login of `"\ud800"` in a JSON body, from a forwarder before normaliseLogin made it U+FFFD)
// took the whole overview down with a 500.
export const userHref = (base: string, userKey: string): string =>
  `${base}/user?key=${encodeURIComponent(wellFormed(userKey))}`

/**
 * A time shown in UTC. Event times come as the forwarder wrote them, possibly with an
 * offset (`...02:41:32+05:00` is 21:41:32 UTC the day before): read as an instant
 * first, never cut as text.
 */
const time = (at: string): string => {
  const ms = eventTime(at)
  const iso = Number.isFinite(ms) ? new Date(ms).toISOString() : at
  return `<time datetime="${esc(iso)}">${esc(iso.replace('T', ' ').slice(0, 19))} UTC</time>`
}

const identityText = (identity: Identity): string =>
  Object.entries(identity)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')

const layout = (ctx: PageContext, title: string, body: string, refresh = false): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="${esc(ctx.base)}/static/favicon.ico">
<title>${esc(title)} · sqreen-auth Security Hub</title>
<link rel="stylesheet" href="${esc(ctx.base)}/static/hub.css">
<script src="${esc(ctx.base)}/static/hub.js" defer></script>
</head>
<body${refresh ? ' data-refresh="5000"' : ''}>
<header class="top">
<a class="brand" href="${esc(ctx.base)}/">sqreen-auth <span>Security Hub</span></a>
${
  ctx.subject === undefined
    ? ''
    : `<form method="post" action="${esc(ctx.base)}/logout" class="logout"><span class="who">signed in (${esc(ctx.subject)})</span> <button type="submit">Sign out</button></form>`
}
</header>
<main id="main">
${body}
</main>
</body>
</html>
`

/** An inline SVG polyline of the score history; the scale starts at 0 and reaches at least 10. */
export const sparkline = (points: readonly ScorePoint[], width = 120, height = 28, className = 'spark'): string => {
  if (points.length === 0) return ''
  const top = Math.max(10, ...points.map((p) => p.score))
  const step = points.length > 1 ? width / (points.length - 1) : 0
  const y = (score: number): number => Math.round((height - 2 - (score / top) * (height - 4)) * 10) / 10
  const coords = points.map((p, i) => `${Math.round(i * step * 10) / 10},${y(p.score)}`).join(' ')
  const first = points[0] as ScorePoint
  const last = points.at(-1) as ScorePoint
  const label = `score from ${first.score} to ${last.score} between ${first.at.slice(0, 16)} and ${last.at.slice(0, 16)} UTC`
  return `<svg class="${esc(className)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(label)}"><title>${esc(label)}</title><polyline points="${coords}"/><circle cx="${width}" cy="${y(last.score)}" r="2"/></svg>`
}

export const loginPage = (ctx: PageContext, message?: string): string =>
  layout(
    ctx,
    'Sign in',
    `<section class="card narrow">
<h1>Sign in</h1>
${message === undefined ? '' : `<p class="error" role="alert">${esc(message)}</p>`}
<form method="post" action="${esc(ctx.base)}/login">
<p><label for="token">Access token</label><br>
<input id="token" name="token" type="password" autocomplete="off" required></p>
<p><button type="submit">Sign in</button></p>
</form>
<p class="muted">The hub's access token (or a JWT it accepts). It is exchanged for a session cookie.</p>
</section>`,
  )

const levelClass = (score: number): string => (score >= 40 ? 'high' : score > 10 ? 'medium' : 'low')

const usersTable = (
  ctx: PageContext,
  rows: readonly UserRow[],
  sparks: ReadonlyMap<string, readonly ScorePoint[]>,
  id: string,
): string =>
  rows.length === 0
    ? '<p class="muted">Nobody yet.</p>'
    : `<table id="${id}">
<thead><tr><th>User</th><th>Identity</th><th class="num">Score</th><th>Last days</th><th class="num">Rise 24 h</th><th class="num">Failed / OK</th><th>Last seen</th></tr></thead>
<tbody>
${rows
  .map(
    (r) =>
      `<tr><td><a href="${esc(userHref(ctx.base, r.userKey))}">${esc(r.userKey)}</a></td><td class="identity">${esc(identityText(r.identity))}</td><td class="num"><span class="score ${levelClass(r.score)}">${esc(r.score)}</span></td><td>${sparkline(sparks.get(r.userKey) ?? [])}</td><td class="num">+${esc(r.rise24h)}</td><td class="num">${esc(r.failed)} / ${esc(r.succeeded)}</td><td>${time(r.lastSeen)}</td></tr>`,
  )
  .join('\n')}
</tbody>
</table>`

const alertItems = (ctx: PageContext, alerts: readonly RiskAlert[]): string =>
  alerts.length === 0
    ? '<p class="muted">No alert yet.</p>'
    : `<ul class="alerts">
${alerts
  .map(
    (a) =>
      `<li>${time(a.at)} ${a.takeover ? '<strong class="takeover">Possible account takeover:</strong> ' : ''}<a href="${esc(userHref(ctx.base, a.userKey))}">${esc(a.userKey)}</a>: risk rose by <strong>+${esc(a.rise)}</strong> (threshold ${esc(a.level)}${a.escalation ? ', escalation' : ''}), score ${esc(a.score)}${a.ip ? `, from ${esc(a.ip)}` : ''} <span class="muted">${esc(
        [...new Set(a.detections.map((d) => detectionLabel(d.detection)))].join(', '),
      )}</span></li>`,
  )
  .join('\n')}
</ul>`

const COUNTERS: readonly [string, string][] = [
  ['hub.events_in', 'Events in'],
  ['hub.accepted', 'Accepted'],
  ['hub.rejected', 'Rejected'],
  ['hub.duplicates', 'Duplicates'],
  ['hub.dropped_upstream', 'Dropped by forwarders'],
  ['hub.batches_refused', 'Batches refused'],
  ['alerts', 'Alerts'],
]

const counterTiles = (stats: DiagnosticsSnapshot): string => {
  const deliveries = Object.entries(stats.counters)
    .filter(([k]) => k.startsWith('deliveries.'))
    .reduce((sum, [, v]) => sum + v, 0)
  const tiles = [
    ...COUNTERS.map(([key, label]) => [label, stats.counters[key] ?? 0] as const),
    ['Deliveries', deliveries] as const,
  ]
  return `<ul class="tiles" id="counters">${tiles
    .map(
      ([label, value]) => `<li><span class="value">${esc(value)}</span><span class="label">${esc(label)}</span></li>`,
    )
    .join('')}</ul>`
}

export const overviewPage = (
  ctx: PageContext,
  data: {
    readonly riskiest: readonly UserRow[]
    readonly rising: readonly UserRow[]
    readonly sparks: ReadonlyMap<string, readonly ScorePoint[]>
    readonly alerts: readonly RiskAlert[]
    readonly stats: DiagnosticsSnapshot
    readonly users: number
  },
): string =>
  layout(
    ctx,
    'Overview',
    `<h1>Overview</h1>
${counterTiles(data.stats)}
<p class="muted">${esc(data.users)} user(s) seen. This page refreshes every 5 seconds.</p>
<section class="card"><h2>Riskiest users</h2>
${usersTable(ctx, data.riskiest, data.sparks, 'riskiest')}
</section>
<section class="card"><h2>Rising in the last 24 hours</h2>
${usersTable(ctx, data.rising, data.sparks, 'rising')}
</section>
<section class="card"><h2>Recent alerts</h2>
${alertItems(ctx, data.alerts)}
</section>`,
    true,
  )

const EVENT_LABELS: Record<string, string> = {
  'login.succeeded': 'Login succeeded',
  'login.failed': 'Login failed',
  'login.error': 'Login error',
  signup: 'Sign-up',
  custom: 'Reported by the app',
}

export const userPage = (ctx: PageContext, user: UserDetail): string => {
  type Item = { at: string; html: string; kind: string }
  const items: Item[] = [
    ...user.events.map((e) => ({
      at: e.at,
      kind: 'event',
      html: `<span class="tag ${e.type === 'login.failed' ? 'bad' : e.type === 'login.succeeded' ? 'good' : ''}">${esc(EVENT_LABELS[e.type] ?? e.type)}</span> ${e.reason ? `${esc(e.reason)} ` : ''}${e.name ? `${esc(e.name)} (${esc(e.severity ?? 'low')}) ` : ''}${e.strategy ? `via ${esc(e.strategy)} ` : ''}${e.ip ? `from ${esc(e.ip)} ` : ''}${e.userAgent ? `<span class="muted ua">${esc(e.userAgent.slice(0, 120))}</span>` : ''}`,
    })),
    ...user.entries.map((d) => ({
      at: d.at,
      kind: 'detection',
      html: `<span class="tag detection">${esc(detectionLabel(d.detection))}</span> <strong>+${esc(d.points)}</strong>${
        d.evidence
          ? ` <span class="muted">${esc(
              Object.entries(d.evidence)
                .filter(([k]) => k !== 'event')
                .map(([k, v]) => `${k} ${v}`)
                .join(', '),
            )}</span>`
          : ''
      }`,
    })),
  ].sort((a, b) => Date.parse(b.at) - Date.parse(a.at) || (a.kind === 'detection' ? -1 : 1))
  return layout(
    ctx,
    user.userKey,
    `<p><a href="${esc(ctx.base)}/">&larr; Overview</a></p>
<h1 id="user-key">${esc(user.userKey)}</h1>
<section class="card summary">
<dl>
<dt>Standing score</dt><dd><span class="score ${levelClass(user.score)}" id="user-score">${esc(user.score)}</span></dd>
<dt>Rise in 24 h</dt><dd id="user-rise">+${esc(user.rise24h)}</dd>
<dt>Identity</dt><dd class="identity">${esc(identityText(user.identity) || '(none)')}</dd>
<dt>Logins failed / succeeded</dt><dd>${esc(user.failed)} / ${esc(user.succeeded)}</dd>
<dt>First / last seen</dt><dd>${time(user.firstSeen)} / ${time(user.lastSeen)}</dd>
</dl>
${sparkline(user.history, 480, 80, 'spark large')}
</section>
<section class="card"><h2>Timeline</h2>
${
  items.length === 0
    ? '<p class="muted">No recent event.</p>'
    : `<ol class="timeline" id="timeline">
${items.map((i) => `<li class="${i.kind}">${time(i.at)} ${i.html}</li>`).join('\n')}
</ol>`
}
</section>
<section class="card"><h2>Alerts</h2>
${alertItems(ctx, user.alerts)}
</section>`,
    true,
  )
}

const ERROR_TITLES: Readonly<Record<number, string>> = { 400: 'Bad request', 413: 'Too large' }

/** A request the hub could not take (a malformed URL, say): the status and nothing else, whoever asks. */
export const errorPage = (ctx: PageContext, status: number): string => {
  const title = ERROR_TITLES[status] ?? (status >= 500 ? 'Something went wrong' : 'Request refused')
  return layout(ctx, title, `<h1>${esc(title)}</h1><p><a href="${esc(ctx.base)}/">Overview</a></p>`)
}

export const notFoundPage = (ctx: PageContext, what: string): string =>
  layout(ctx, 'Not found', `<h1>Not found</h1><p>${esc(what)}</p><p><a href="${esc(ctx.base)}/">Overview</a></p>`)
