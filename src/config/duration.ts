// Durations in config are written for humans ("200ms", "90s", "15m", "1h", "7d") or as plain seconds.

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Parse a duration to seconds; returns undefined when the text is not a duration. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|[smhd])?\s*$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]) * (UNITS[m[2] ?? "s"] ?? 1);
  return Number.isFinite(n) ? n : undefined;
}
