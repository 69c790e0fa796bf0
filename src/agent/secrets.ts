// Credential references, resolved only inside an agent: `env:NAME` reads the agent's environment,
// `file:/path` reads a file (trailing newline trimmed). A clean interface so vault-style providers
// can be added as further schemes. Resolved values are never logged or put into errors.

import { readFile } from "node:fs/promises";

export class SecretResolutionError extends Error {
  constructor(readonly reference: string, reason: string) {
    super(`cannot resolve credential reference ${reference}: ${reason}`);
    this.name = "SecretResolutionError";
  }
}

export interface SecretProvider {
  scheme: string;
  resolve(rest: string, reference: string): Promise<string>;
}

export const envProvider: SecretProvider = {
  scheme: "env",
  async resolve(name, ref) {
    const v = process.env[name];
    if (v === undefined) throw new SecretResolutionError(ref, `environment variable ${name} is not set in the agent`);
    return v;
  },
};

export const fileProvider: SecretProvider = {
  scheme: "file",
  async resolve(path, ref) {
    try {
      return (await readFile(path, "utf8")).replace(/\r?\n$/, "");
    } catch (e) {
      throw new SecretResolutionError(ref, `file ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
  },
};

const REFERENCE = /^([a-z][a-z0-9+.-]*):(.*)$/s;

/**
 * Whether `value` has the shape of a reference (`scheme:rest`), whether or not a provider for its
 * scheme exists: checks that must not let a reference through (target pinning) treat every such
 * value as one.
 */
export function isSecretReference(value: string): boolean {
  return REFERENCE.test(value);
}

export class SecretResolver {
  #providers = new Map<string, SecretProvider>();
  constructor(providers: SecretProvider[] = [envProvider, fileProvider]) {
    for (const p of providers) this.#providers.set(p.scheme, p);
  }
  /** Resolve a reference; a value without a known `scheme:` prefix is a literal. */
  async resolve(reference: string): Promise<string> {
    const m = REFERENCE.exec(reference);
    const provider = m ? this.#providers.get(m[1]!) : undefined;
    if (!m || !provider) return reference;
    return provider.resolve(m[2]!, `${m[1]}:${m[1] === "env" ? m[2] : "…"}`);
  }
}
