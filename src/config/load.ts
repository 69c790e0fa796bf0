// Reads one YAML file, substitutes ${ENV_VAR} references in string values, and validates it.
// Errors name the key path and what is wrong; the secret values that came from the environment
// are never echoed back.

import { readFileSync } from "node:fs";
import { parse as parseYaml, YAMLParseError } from "yaml";
import type { z } from "zod";
import { GatehouseError } from "../domain/errors.ts";
import { type Config, configSchema } from "./schema.ts";

export interface ConfigProblem {
  path: string;
  message: string;
}

/** Format a key path the way users write it: `connections[0].postgres.port`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || "(top level)";
}

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replace `${VAR}` and `${VAR:-default}` in every string of a parsed document. `$${` escapes a
 * literal `${`. Missing variables are collected, with the key they were referenced from.
 */
export function interpolateEnv(doc: unknown, env: NodeJS.ProcessEnv, missing: ConfigProblem[] = [], path: PropertyKey[] = []): unknown {
  if (typeof doc === "string") {
    const parts = doc.split("$${");
    const replaced = parts.map((part) =>
      part.replace(REF, (_m, name: string, dflt: string | undefined) => {
        const v = env[name];
        if (v !== undefined && v !== "") return v;
        if (dflt !== undefined) return dflt;
        missing.push({ path: formatPath(path), message: `environment variable ${name} is not set` });
        return "";
      }),
    );
    return replaced.join("${");
  }
  if (Array.isArray(doc)) return doc.map((v, i) => interpolateEnv(v, env, missing, [...path, i]));
  if (doc && typeof doc === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(doc)) out[k] = interpolateEnv(v, env, missing, [...path, k]);
    return out;
  }
  return doc;
}

export function zodProblems(error: z.ZodError): ConfigProblem[] {
  return error.issues.map((i) => {
    if (i.code === "unrecognized_keys") {
      return { path: formatPath(i.path), message: `unknown key${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `"${k}"`).join(", ")}` };
    }
    return { path: formatPath(i.path), message: i.message };
  });
}

export class ConfigError extends GatehouseError {
  readonly problems: ConfigProblem[];
  constructor(key: "CONFIG_INVALID" | "CONFIG_ENV_MISSING" | "CONFIG_UNREADABLE", source: string, problems: ConfigProblem[]) {
    super(key, `${source}\n${problems.map((p) => `  - ${p.path}: ${p.message}`).join("\n")}`);
    this.problems = problems;
  }
}

/** Validate an already-parsed document (from YAML, or built in code for the demo and tests). */
export function parseConfig(doc: unknown, source = "config", env: NodeJS.ProcessEnv = process.env): Config {
  const missing: ConfigProblem[] = [];
  const interpolated = interpolateEnv(doc ?? {}, env, missing);
  if (missing.length) throw new ConfigError("CONFIG_ENV_MISSING", source, missing);
  const r = configSchema.safeParse(interpolated);
  if (!r.success) throw new ConfigError("CONFIG_INVALID", source, zodProblems(r.error));
  return r.data;
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError("CONFIG_UNREADABLE", file, [{ path: "(file)", message: (e as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : String((e as Error).message) }]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message : String(e);
    throw new ConfigError("CONFIG_UNREADABLE", file, [{ path: "(yaml)", message: msg }]);
  }
  return parseConfig(doc, file, env);
}
