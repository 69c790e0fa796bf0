// An agent's own OIDC identity: the OAuth 2.0 client-credentials grant against the identity
// provider's token endpoint (Entra: https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token
// with scope api://<gateway-app>/.default). The agent fetches a fresh token before each tunnel
// connection; the gateway closes a token-authenticated tunnel when the token expires.

import { GatehouseError } from "../domain/errors.ts";

export interface ClientCredentialsOptions {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  /** Entra v2: `api://<gateway-app-id>/.default`. */
  scope?: string;
  /** RFC 8707 resource indicator (other providers). */
  resource?: string;
  /** How the client authenticates at the token endpoint (default basic). */
  auth?: "basic" | "post";
}

export function clientCredentialsTokenSource(o: ClientCredentialsOptions): () => Promise<string> {
  return async () => {
    const form = new URLSearchParams({ grant_type: "client_credentials" });
    if (o.scope) form.set("scope", o.scope);
    if (o.resource) form.set("resource", o.resource);
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    if ((o.auth ?? "basic") === "basic") headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(o.clientSecret)}`).toString("base64")}`;
    else {
      form.set("client_id", o.clientId);
      form.set("client_secret", o.clientSecret);
    }
    let res: Response;
    try {
      res = await fetch(o.tokenUrl, { method: "POST", headers, body: form.toString(), signal: AbortSignal.timeout(15_000) });
    } catch (e) {
      throw new GatehouseError("AUTH_ISSUER_UNREACHABLE", `token endpoint ${o.tokenUrl}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
    }
    const body = (await res.json().catch(() => ({}))) as { access_token?: string; error?: string; error_description?: string };
    if (!res.ok || !body.access_token) throw new GatehouseError("AGENT_AUTH_FAILED", `the token endpoint refused the agent's client credentials: ${res.status} ${body.error ?? ""} ${body.error_description ?? ""}`.trim());
    return body.access_token;
  };
}
