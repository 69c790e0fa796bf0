// Wildcard patterns for names in rules (`pg-*`, `audit_*`). `*` matches any run of characters,
// `?` one character; everything else is literal. Case-sensitive, like PostgreSQL identifiers
// after parsing and like connection names.

const cache = new Map<string, RegExp>();

export function globToRegExp(pattern: string): RegExp {
  let re = cache.get(pattern);
  if (re) return re;
  let src = "^";
  for (const ch of pattern) {
    if (ch === "*") src += ".*";
    else if (ch === "?") src += ".";
    else src += ch.replace(/[.+^${}()|[\]\\/-]/g, "\\$&");
  }
  re = new RegExp(`${src}$`, "s");
  if (cache.size > 5000) cache.clear();
  cache.set(pattern, re);
  return re;
}

export function globMatch(pattern: string, value: string): boolean {
  return globToRegExp(pattern).test(value);
}
