/**
 * The dashboard's stylesheet and script, served as files by the router (a
 * Content-Security-Policy with `script-src 'self'` allows them, and no inline
 * code is needed). Kept as strings so the build (tsc) ships them without a copy
 * step. The script only refreshes the page's <main> from the server and shows
 * times in the reader's time zone; the page works without it.
 */

export const HUB_CSS: string = `:root { color-scheme: light dark; --fg: #1d232b; --muted: #66707c; --bg: #f5f6f8; --card: #fff; --line: #dde1e6; --accent: #2456d8; --bad: #c62828; --warn: #d97706; --good: #2e7d32; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --muted: #9aa4b0; --bg: #14171c; --card: #1d2229; --line: #2f3640; --accent: #7aa2ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header.top { display: flex; justify-content: space-between; align-items: center; padding: 10px 24px; background: var(--card); border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; color: var(--fg); text-decoration: none; } .brand span { color: var(--accent); }
.logout { margin: 0; } .who { color: var(--muted); margin-right: 8px; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 16px; word-break: break-all; } h2 { font-size: 16px; margin: 0 0 12px; }
a { color: var(--accent); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin: 0 0 16px; overflow-x: auto; }
.card.narrow { max-width: 420px; margin: 40px auto; }
.muted { color: var(--muted); } .error { color: var(--bad); font-weight: 600; } .takeover { color: var(--bad); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.identity, dd.identity { max-width: 320px; overflow-wrap: anywhere; color: var(--muted); }
.score { display: inline-block; min-width: 3em; text-align: center; padding: 1px 6px; border-radius: 10px; font-weight: 700; }
.score.low { background: rgba(46, 125, 50, .15); color: var(--good); }
.score.medium { background: rgba(217, 119, 6, .18); color: var(--warn); }
.score.high { background: rgba(198, 40, 40, .18); color: var(--bad); }
svg.spark { display: block; overflow: visible; }
svg.spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; stroke-linejoin: round; }
svg.spark circle { fill: var(--accent); }
svg.spark.large { width: 100%; max-width: 480px; height: 80px; margin-top: 12px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 12px; list-style: none; padding: 0; margin: 0 0 8px; }
.tiles li { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tiles .value { display: block; font-size: 20px; font-weight: 700; font-variant-numeric: tabular-nums; }
.tiles .label { color: var(--muted); font-size: 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 6px 16px; margin: 0; } dt { color: var(--muted); } dd { margin: 0; }
ol.timeline, ul.alerts { list-style: none; padding: 0; margin: 0; }
ol.timeline li, ul.alerts li { padding: 6px 0; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
ol.timeline li.detection { background: rgba(217, 119, 6, .07); }
time { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: 6px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 4px; background: var(--line); font-size: 12px; font-weight: 600; }
.tag.bad { background: rgba(198, 40, 40, .18); color: var(--bad); } .tag.good { background: rgba(46, 125, 50, .15); color: var(--good); }
.tag.detection { background: rgba(217, 119, 6, .2); color: var(--warn); }
.ua { font-size: 12px; }
input[type=password] { width: 100%; padding: 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
button { padding: 6px 14px; border: 1px solid var(--accent); border-radius: 6px; background: var(--accent); color: #fff; font-weight: 600; cursor: pointer; }
`

export const HUB_JS: string = `// sqreen-auth Security Hub: local times, and <main> refreshed in place.
;(() => {
  'use strict'
  const localTimes = (root) => {
    for (const el of root.querySelectorAll('time[datetime]')) {
      const d = new Date(el.getAttribute('datetime'))
      if (!Number.isNaN(d.getTime())) {
        el.title = el.textContent
        el.textContent = d.toLocaleString()
      }
    }
  }
  localTimes(document)
  const every = Number(document.body.dataset.refresh)
  if (!every) return
  let busy = false
  setInterval(() => {
    if (document.hidden || busy) return
    busy = true
    fetch(location.href, { credentials: 'same-origin', headers: { accept: 'text/html' } })
      .then((res) => {
        // Signed out meanwhile (the session expired): show the sign-in page.
        if (res.redirected || res.status === 401) location.reload()
        if (!res.ok || res.redirected) throw new Error('HTTP ' + res.status)
        return res.text()
      })
      .then((html) => {
        const next = new DOMParser().parseFromString(html, 'text/html').getElementById('main')
        const current = document.getElementById('main')
        if (next && current) {
          localTimes(next)
          current.replaceWith(document.adoptNode(next))
        }
      })
      .catch(() => {})
      .finally(() => {
        busy = false
      })
  }, every)
})()
`
