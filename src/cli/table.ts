// Plain-text tables for terminals: columns padded to their widest cell, long cells shortened.

export function table(headers: string[], rows: string[][], maxCell = 60): string {
  const cut = (s: string) => {
    const one = s.replace(/\s+/g, " ").trim();
    return one.length > maxCell ? `${one.slice(0, maxCell - 1)}…` : one;
  };
  const cells = rows.map((r) => r.map(cut));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}

/** "3m ago" / "in 12m" relative to now. */
export function relative(iso: string | null, now = Date.now()): string {
  if (!iso) return "";
  const d = Math.round((Date.parse(iso) - now) / 1000);
  const a = Math.abs(d);
  const s = a < 60 ? `${a}s` : a < 3600 ? `${Math.round(a / 60)}m` : a < 86400 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86400)}d`;
  return d < 0 ? `${s} ago` : `in ${s}`;
}
