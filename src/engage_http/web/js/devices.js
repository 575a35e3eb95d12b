// A user agent in words ("Firefox on Android") for the sessions and activity pages.

const BROWSERS = [
  [/\bEdg(e|A|iOS)?\//, "Edge"],
  [/\bOPR\//, "Opera"],
  [/\bFirefox\/|\bFxiOS\//, "Firefox"],
  [/Chrom(e|ium)\/|\bCriOS\//, "Chrome"], // HeadlessChrome too
  [/\bSafari\//, "Safari"],
  [/^curl\//, "curl"],
];
const SYSTEMS = [
  [/\bAndroid\b/, "Android"],
  [/\biPhone\b/, "iPhone"],
  [/\biPad\b/, "iPad"],
  [/\bWindows\b/, "Windows"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bMac OS X\b|\bMacintosh\b/, "macOS"],
  [/\bLinux\b/, "Linux"],
];

const first = (table, text) => table.find(([pattern]) => pattern.test(text))?.[1];

/** "Chrome on Linux", or the agent itself when neither is known, or "Unknown device". */
export function describeDevice(userAgent) {
  if (!userAgent) return "Unknown device";
  const browser = first(BROWSERS, userAgent);
  const system = first(SYSTEMS, userAgent);
  if (browser && system) return `${browser} on ${system}`;
  return browser || system || userAgent;
}
