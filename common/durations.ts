/**
 * Durations as operators type them: "500ms", "90s", "10m", "1h30m". Sandbox-safe (used by the workflow).
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(?:\d+(?:ms|s|m|h))+$/;
const PART = /(\d+)(ms|s|m|h)/g;

/** Milliseconds for a duration string; null when it is not one (e.g. "10", "5 min", "-3s", "1.5h"). */
export function parseDuration(text: string): number | null {
  const t = text.trim();
  if (!DURATION.test(t)) return null;
  let total = 0;
  for (const m of t.matchAll(PART)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return Number.isSafeInteger(total) ? total : null;
}

/** "1h 2m 3.4s"-style text for messages and progress output. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = Math.round(s % 60);
  return h > 0 ? `${h}h ${m}m ${rest}s` : `${m}m ${rest}s`;
}
