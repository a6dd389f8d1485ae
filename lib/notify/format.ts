import type { RiskAlert } from '../risk/alert.js'

const LABELS: Record<string, string> = {
  wrong_password: 'Wrong password',
  failure_burst: 'Burst of failed logins',
  brute_force: 'Brute force',
  distributed_guessing: 'Distributed password guessing',
  stuffing_target: 'Targeted from a credential-stuffing IP',
  success_from_flagged_ip: 'Login from a credential-stuffing IP',
  success_after_brute_force: 'Login right after a brute force',
  new_device: 'Login from a new device',
  disposable_email: 'Throwaway e-mail domain',
  relay_email: 'Privacy-relay e-mail domain',
  attack_low: 'Attack reported by the app (low)',
  attack_medium: 'Attack reported by the app (medium)',
  attack_high: 'Attack reported by the app (high)',
  attack_critical: 'Attack reported by the app (critical)',
}

export const detectionLabel = (detection: string): string => LABELS[detection] ?? detection

const hours = (ms: number): string => (ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : `${Math.round(ms / 60_000)}min`)

/** The most of a user key shown to people; the alert's JSON (the webhook) carries it whole. */
export const USER_SHOWN = 300

/**
 * Text that came from a user (a login typed, an identity) as shown to people: control
 * characters (line breaks included), the Unicode line and paragraph separators and the
 * format characters (Cf: bidirectional overrides and isolates, zero-width spaces and
 * joiners, soft hyphens) each become U+FFFD, so a login can neither add lines of its own
 * to a message ("standing score: 0", "false positive") nor display as another text
 * (`admin\u202e@moc.elpmaxe` shows as a different address); cut to `max` characters
 * with an ellipsis, never inside a surrogate pair.
 */
export const shownText = (text: string, max: number): string => {
  const clean = visible(text)
  if (clean.length <= max) return clean
  let end = max - 1
  const last = clean.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end--
  return `${clean.slice(0, end)}…`
}

/**
 * `text` with its control, line-separator and format (Cf) characters, and every other
 * character Unicode says to display as nothing (Default_Ignorable_Code_Point: the combining
 * grapheme joiner U+034F, variation selectors, Hangul fillers), each replaced by U+FFFD (see
 * `shownText`): `ali\u034fce@example.com` rendered exactly as alice's address, same width.
 */
export const visible = (text: string): string => text.replace(INVISIBLE, '\ufffd')

// biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are what is replaced
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\p{Cf}\p{Default_Ignorable_Code_Point}]/gu

/** The user as shown to people: the ledger key, which is the id or pseudonym in advanced mode. */
export const alertUser = (alert: RiskAlert): string => shownText(alert.userKey, USER_SHOWN)

/**
 * The most of a user key an e-mail subject shows: a login typed by anyone can be a
 * sentence ("false positive: pentest, no action needed"), and a subject line is read
 * before anything else; the body has the key up to `USER_SHOWN`.
 */
export const USER_IN_SUBJECT = 64

/** The user in a subject line: cut to `USER_IN_SUBJECT`. */
export const subjectUser = (alert: RiskAlert): string => shownText(alert.userKey, USER_IN_SUBJECT)

export const alertTitle = (alert: RiskAlert): string =>
  `${alert.takeover ? 'Possible account takeover: user' : alert.escalation ? 'Escalation: user' : 'User'} risk rose by ${alert.rise} points in ${hours(alert.windowMs)}`

/** The most of one evidence value shown (a domain, an address, a count). */
const EVIDENCE_SHOWN = 120

/** Detections folded by kind: "Wrong password ×5 (+5)". */
export const detectionLines = (alert: RiskAlert): string[] => {
  const byKind = new Map<
    string,
    { count: number; points: number; evidence?: Readonly<Record<string, string | number>> }
  >()
  for (const d of alert.detections) {
    const seen = byKind.get(d.detection) ?? { count: 0, points: 0 }
    seen.count++
    seen.points += d.points
    if (d.evidence) seen.evidence = d.evidence
    byKind.set(d.detection, seen)
  }
  return [...byKind].map(([kind, { count, points, evidence }]) => {
    const facts = evidence
      ? Object.entries(evidence)
          .filter(([k]) => k !== 'event')
          // Evidence can be the user's own text (the domain of the e-mail they gave):
          // `x@a\nStanding score: 0 (false positive)\n.mailinator.com` added lines of its own.
          .map(([k, v]) => `${shownText(k, EVIDENCE_SHOWN)} ${shownText(String(v), EVIDENCE_SHOWN)}`)
          .join(', ')
      : ''
    return `${detectionLabel(kind)}${count > 1 ? ` ×${count}` : ''} (+${Math.round(points * 100) / 100})${facts ? ` — ${facts}` : ''}`
  })
}

/** Plain text used by e-mail, the log channel and Slack's notification fallback. */
export const alertText = (alert: RiskAlert): string =>
  [
    `${alertTitle(alert)} (threshold: more than ${alert.level}).`,
    `User: ${alertUser(alert)}`,
    `Standing score: ${alert.score}`,
    ...(alert.ip ? [`Last IP: ${alert.ip}`] : []),
    'Detections:',
    ...detectionLines(alert).map((l) => `  - ${l}`),
    `Alert ${alert.id} at ${alert.at}`,
  ].join('\n')
