/**
 * A user agent's *family* ("Firefox on Windows"): the new-device detection
 * compares families, not full strings, so a browser update is not a new device.
 * Rules are checked in order; the first match wins (Edge and Opera announce
 * Chrome too, Chrome announces Safari).
 */
const BROWSERS: readonly [RegExp, string][] = [
  [/\bEdgA?\//, 'Edge'],
  [/\bOPR\/|\bOpera\b/, 'Opera'],
  [/\bSamsungBrowser\//, 'Samsung Internet'],
  [/\bFirefox\/|\bFxiOS\//, 'Firefox'],
  [/\bChrome\/|\bCriOS\//, 'Chrome'],
  [/\bVersion\/[\d.]+.*\bSafari\//, 'Safari'],
  [/^curl\//, 'curl'],
  [/^Wget\//, 'Wget'],
  [/^python-requests\/|^Python-urllib\/|^aiohttp\//, 'Python'],
  [/^Go-http-client\//, 'Go'],
  [/^node-fetch|^undici|^axios\//, 'Node.js'],
  [/^okhttp\//, 'OkHttp'],
  [/^PostmanRuntime\//, 'Postman'],
]

const SYSTEMS: readonly [RegExp, string][] = [
  [/\bWindows\b/, 'Windows'],
  [/\biPhone|\biPad|\biPod/, 'iOS'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\bAndroid\b/, 'Android'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bLinux\b/, 'Linux'],
]

// Few distinct user agents reach one app; caching their family avoids running the
// regular expressions per login and lets stored device lists share one string each.
const cache = new Map<string, string>()
const CACHE_MAX = 2_000

export const userAgentFamily = (ua: string | null): string => {
  if (ua === null || ua === '') return 'unknown'
  const cached = cache.get(ua)
  if (cached !== undefined) return cached
  const family = classify(ua)
  if (cache.size >= CACHE_MAX) cache.clear()
  cache.set(ua, family)
  return family
}

const classify = (ua: string): string => {
  const browser = BROWSERS.find(([re]) => re.test(ua))?.[1] ?? (/^[A-Za-z][\w.-]{0,31}/.exec(ua)?.[0] || 'other')
  const system = SYSTEMS.find(([re]) => re.test(ua))?.[1]
  return system ? `${browser} on ${system}` : browser
}
