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

export const userAgentFamily = (ua: string | null): string => {
  if (ua === null || ua === '') return 'unknown'
  const browser = BROWSERS.find(([re]) => re.test(ua))?.[1] ?? (/^[A-Za-z][\w.-]{0,31}/.exec(ua)?.[0] || 'other')
  const system = SYSTEMS.find(([re]) => re.test(ua))?.[1]
  return system ? `${browser} on ${system}` : browser
}
