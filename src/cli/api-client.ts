// How CLI commands reach a running gateway: the API URL from --api or GATEHOUSE_API, the caller's
// own token from --token or GATEHOUSE_TOKEN. Problem+json answers become GatehouseErrors with the
// server's code, so the CLI prints the same code and hint the API sent.

import type { Command } from "commander";
import { type ErrorDef, ERRORS, GatehouseError } from "../domain/errors.ts";

export interface ApiOptions {
  api?: string;
  token?: string;
}

export function addApiOptions(cmd: Command): Command {
  return cmd.option("--api <url>", "gateway API URL (default: $GATEHOUSE_API or http://127.0.0.1:8080)").option("--token <token>", "your access token (default: $GATEHOUSE_TOKEN)");
}

export class ApiClient {
  readonly base: string;
  readonly #token: string;
  constructor(o: ApiOptions) {
    this.base = (o.api ?? process.env.GATEHOUSE_API ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
    const token = o.token ?? process.env.GATEHOUSE_TOKEN;
    if (!token) throw new GatehouseError("AUTH_TOKEN_MISSING", "set GATEHOUSE_TOKEN or pass --token with your own access token");
    this.#token = token;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.#token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw new GatehouseError("API_UNREACHABLE", `${this.base}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) throw problemToError(res.status, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** GET a streamed body (JSON Lines, casts) chunk by chunk; problems still become GatehouseErrors. */
  async *stream(path: string): AsyncGenerator<Buffer> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, { headers: { authorization: `Bearer ${this.#token}` } });
    } catch (e) {
      throw new GatehouseError("API_UNREACHABLE", `${this.base}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
    }
    if (!res.ok) throw problemToError(res.status, await res.text());
    if (!res.body) return;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) yield Buffer.from(chunk);
  }

  /** GET a JSON Lines stream, one parsed value per line. */
  async *lines<T>(path: string): AsyncGenerator<T> {
    let rest = "";
    const utf8 = new TextDecoder("utf-8");
    for await (const chunk of this.stream(path)) {
      rest += utf8.decode(chunk, { stream: true });
      let nl = rest.indexOf("\n");
      while (nl >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line.trim()) yield JSON.parse(line) as T;
        nl = rest.indexOf("\n");
      }
    }
    if (rest.trim()) yield JSON.parse(rest) as T;
  }
}

function problemToError(status: number, text: string): GatehouseError {
  let p: { code?: string; detail?: string; title?: string } = {};
  try {
    p = JSON.parse(text) as typeof p;
  } catch {
    /* not JSON */
  }
  const def: ErrorDef | undefined = Object.values(ERRORS).find((d) => d.code === p.code);
  if (def) return new GatehouseError(def, p.detail);
  return new GatehouseError("API_UNREACHABLE", `HTTP ${status}: ${p.title ?? text.slice(0, 200)}`);
}
