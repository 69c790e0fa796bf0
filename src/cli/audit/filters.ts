// The filter options `audit search` and `audit export` share, and their API query string.

import type { Command } from "commander";

export interface FilterOptions {
  principal?: string;
  type?: string;
  connection?: string;
  session?: string;
  decision?: string;
  rule?: string;
  from?: string;
  to?: string;
  text?: string;
}

const FILTERS: Array<[keyof FilterOptions, string]> = [
  ["principal", "principal subject, or part of the display name"],
  ["type", "event type; a prefix when it ends with . or * (e.g. review.)"],
  ["connection", "connection name"],
  ["session", "session id"],
  ["decision", "allow, deny, review…"],
  ["rule", "rule name"],
  ["from", "from this time (ISO 8601 or Unix ms, inclusive)"],
  ["to", "until this time (ISO 8601 or Unix ms, exclusive)"],
  ["text", "text in the event's data (case-insensitive)"],
];

export function addFilterOptions(cmd: Command): Command {
  for (const [name, help] of FILTERS) cmd.option(`--${name} <value>`, help);
  return cmd;
}

export function filterParams(o: FilterOptions): URLSearchParams {
  const q = new URLSearchParams();
  for (const [name] of FILTERS) {
    const v = o[name];
    if (v !== undefined) q.set(name, v);
  }
  return q;
}
