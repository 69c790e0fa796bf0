// Bearer-token authentication for the API, with the same verifier the data path uses.
// Failures are counted and audited with their reason code — never with the token.

import type { FastifyRequest } from "fastify";
import type { AuditLog } from "../audit/log.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Principal } from "../domain/principal.ts";
import type { TrustedToken } from "../identity/verifier.ts";
import type { GatewayMetrics } from "../observability/metrics.ts";

export interface Verifier {
  verify(token: string): Promise<Principal>;
  /** A token verified before and still trusted, without waiting (hot paths); else undefined. */
  cached?(token: string): TrustedToken | undefined;
  /** Whether an entry from `cached` may still be used. */
  isTrusted?(entry: TrustedToken): boolean;
}

/** The credential of an `Authorization: Bearer <credential>` header, or undefined. */
export function bearerFrom(header: string | undefined): string | undefined {
  return header ? /^Bearer[ ]+(\S+)\s*$/i.exec(header)?.[1] : undefined;
}

export function bearerToken(req: FastifyRequest): string {
  const h = req.headers.authorization;
  if (!h) throw new GatehouseError("AUTH_TOKEN_MISSING");
  const token = bearerFrom(h);
  if (!token) throw new GatehouseError("AUTH_TOKEN_MISSING", "the Authorization header must be `Bearer <token>`");
  return token;
}

export async function authenticate(req: FastifyRequest, verifier: Verifier, audit: AuditLog, metrics: GatewayMetrics): Promise<Principal> {
  try {
    return await verifier.verify(bearerToken(req));
  } catch (e) {
    const code = e instanceof GatehouseError ? e.code : "internal";
    metrics.authFailures.inc({ surface: "api", code });
    // Audit is best effort here: the request is refused either way.
    audit.append({ type: "auth.failed", data: { surface: "api", code, client: req.ip, path: req.routeOptions.url ?? req.url } }).catch(() => {});
    throw e;
  }
}

export function requireGroup(p: Principal, groups: readonly string[], what: string): void {
  if (groups.length === 0 || !groups.some((g) => p.groups.includes(g))) {
    throw new GatehouseError("API_FORBIDDEN", `${what} needs membership in one of: ${groups.length ? groups.join(", ") : "(no group is configured: set api.adminGroups)"}`);
  }
}
