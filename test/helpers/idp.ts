// A real OpenID provider (panva's oidc-provider) on 127.0.0.1, issuing client-credentials access
// tokens shaped like Entra ID app-only tokens (oid, tid, azp, idtyp: app, ver 2.0, roles, groups).
// Why: integration tests (identity, PostgreSQL gateway, …) need genuine tokens obtained over HTTP
// from a genuine issuer with discovery and a JWKS — not hand-made fakes. Any client id works; its
// secret is clientSecret(id). Per-token claims travel in a test-only request header.
// Must never be used outside tests: it trusts whatever claims the caller asks for.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, importJWK, type JSONWebKeySet, type JWK, type JWTPayload, SignJWT } from "jose";
import { type IdentityConfig, type IssuerConfig, identitySchema } from "../../src/config/schema.ts";
import { devObjectId } from "../../src/identity/index.ts";

export type IdpAlg = "RS256" | "ES256";

export interface TestIdpOptions {
  /** Resource indicator and `aud` of issued tokens. Default `api://gatehouse-test`. */
  audience?: string;
  /** `tid` of issued tokens. */
  tenantId?: string;
  alg?: IdpAlg;
  /** Access token lifetime. Default 600 s. */
  tokenLifetimeSeconds?: number;
}

export interface TestTokenOptions {
  /** Any id; the client is created on demand. Default `gatehouse-test-agent`. */
  clientId?: string;
  groups?: string[];
  roles?: string[];
  /** `tid`; default the IdP's tenantId. */
  tenantId?: string;
  /** `oid` (and `sub`, as in Entra app tokens); default derived from the client id. */
  objectId?: string;
  /** Header `typ`: oidc-provider's RFC 9068 `at+jwt` (default) or Entra's `JWT`. */
  typ?: "at+jwt" | "JWT";
  /** Extra or overriding payload claims, applied last (e.g. `hasgroups: true`). */
  claims?: Record<string, unknown>;
  /** Payload claims to delete from the issued token (e.g. `["exp"]`). */
  omit?: string[];
}

export interface TestIdp {
  issuer: string;
  audience: string;
  tenantId: string;
  tokenEndpoint: string;
  jwksUri: string;
  /** kid of the key new tokens are signed with. */
  readonly kid: string;
  /** A client-credentials token from a real HTTP POST to the token endpoint (client_secret_basic). */
  token(opts?: TestTokenOptions): Promise<string>;
  clientSecret(clientId: string): string;
  /** The `oid` tokens for this client carry by default. */
  objectIdFor(clientId: string): string;
  /** Signs arbitrary claims with the IdP's current key (for crafted-claims tests). */
  sign(claims: JWTPayload, header?: Record<string, unknown>): Promise<string>;
  /** The published (public) keys. */
  publicJwks(): JSONWebKeySet;
  /** Switches to a new signing key; the old one stays published unless dropPrevious. Returns the new kid. */
  rotateKeys(opts?: { dropPrevious?: boolean }): Promise<string>;
  /** A complete IdentityConfig trusting this IdP (schema defaults applied). */
  identityConfig(overrides?: Partial<Omit<IdentityConfig, "issuers">>, issuer?: Partial<IssuerConfig>): IdentityConfig;
  close(): Promise<void>;
}

const CLAIMS_HEADER = "x-gatehouse-test-token";
const DEFAULT_TENANT = "3f1c2d4e-5a6b-4c7d-8e9f-a0b1c2d3e4f5";

interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
}
type ProviderCtor = new (issuer: string, config: Record<string, unknown>) => OidcProvider;
interface Ctx {
  get(name: string): string;
}

// oidc-provider ships no type declarations; a string-typed specifier keeps tsc from demanding them.
const OIDC_PROVIDER: string = "oidc-provider";

async function newKey(alg: IdpAlg, n: number): Promise<{ priv: JWK; pub: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `test-${alg.toLowerCase()}-${n}-${Math.random().toString(36).slice(2, 8)}`;
  const meta = { kid, alg, use: "sig" };
  return { priv: { ...(await exportJWK(privateKey)), ...meta }, pub: { ...(await exportJWK(publicKey)), ...meta } };
}

/** An in-memory adapter that knows every client id (confidential, client_credentials only). */
function adapterFactory(secretFor: (id: string) => string) {
  const store = new Map<string, unknown>();
  return (model: string) => ({
    async find(id: string) {
      if (model === "Client") {
        return {
          client_id: id,
          client_secret: secretFor(id),
          grant_types: ["client_credentials"],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: "client_secret_basic",
        };
      }
      return store.get(`${model}:${id}`);
    },
    async upsert(id: string, payload: unknown) {
      store.set(`${model}:${id}`, payload);
    },
    async destroy(id: string) {
      store.delete(`${model}:${id}`);
    },
    async consume() {},
    async findByUid() {
      return undefined;
    },
    async findByUserCode() {
      return undefined;
    },
    async revokeByGrantId() {},
  });
}

export async function startTestIdp(opts: TestIdpOptions = {}): Promise<TestIdp> {
  const { default: Provider } = (await import(OIDC_PROVIDER)) as { default: ProviderCtor };
  const audience = opts.audience ?? "api://gatehouse-test";
  const tenantId = opts.tenantId ?? DEFAULT_TENANT;
  const alg = opts.alg ?? "RS256";
  const secretFor = (id: string) => `secret-for-${id}`;
  const objectIdFor = (clientId: string) => devObjectId(`test-idp-sp:${clientId}`);
  const adapter = adapterFactory(secretFor);

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(503).end();
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const requested = (ctx: Ctx): TestTokenOptions => {
    const raw = ctx.get(CLAIMS_HEADER);
    return raw ? (JSON.parse(Buffer.from(raw, "base64url").toString("utf8")) as TestTokenOptions) : {};
  };

  let keys: { priv: JWK; pub: JWK }[] = [];
  let generation = 0;
  const install = () => {
    const provider = new Provider(issuer, {
      adapter,
      jwks: { keys: keys.map((k) => k.priv) },
      cookies: { keys: ["gatehouse-test-idp"] },
      clientDefaults: { id_token_signed_response_alg: alg },
      ttl: { ClientCredentials: () => opts.tokenLifetimeSeconds ?? 600 },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => audience,
          useGrantedResource: async () => true,
          getResourceServerInfo: async () => ({
            scope: "",
            audience,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg } },
          }),
        },
      },
      // Entra app-only claims.
      extraTokenClaims: async (ctx: Ctx, token: { clientId: string }) => {
        const r = requested(ctx);
        const extra: Record<string, unknown> = {
          oid: r.objectId ?? objectIdFor(token.clientId),
          tid: r.tenantId ?? tenantId,
          azp: token.clientId,
          idtyp: "app",
          ver: "2.0",
        };
        if (r.roles) extra["roles"] = r.roles;
        if (r.groups) extra["groups"] = r.groups;
        return extra;
      },
      formats: {
        customizers: {
          jwt: async (ctx: Ctx, _token: unknown, jwt: { header?: Record<string, unknown>; payload: Record<string, unknown> }) => {
            const r = requested(ctx);
            jwt.payload["sub"] = jwt.payload["oid"]; // Entra: app tokens have sub === oid
            Object.assign(jwt.payload, r.claims ?? {});
            for (const k of r.omit ?? []) delete jwt.payload[k];
            if (r.typ) jwt.header = { ...jwt.header, typ: r.typ };
          },
        },
      },
    });
    handler = provider.callback();
  };
  const rotateKeys = async (o: { dropPrevious?: boolean } = {}) => {
    const k = await newKey(alg, ++generation);
    keys = o.dropPrevious ? [k] : [k, ...keys];
    install(); // the provider signs with the first key of its set
    return k.pub.kid!;
  };
  await rotateKeys();

  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { token_endpoint: string; jwks_uri: string };

  return {
    issuer,
    audience,
    tenantId,
    tokenEndpoint: discovery.token_endpoint,
    jwksUri: discovery.jwks_uri,
    get kid() {
      return keys[0]!.pub.kid!;
    },
    clientSecret: secretFor,
    objectIdFor,
    async token(t: TestTokenOptions = {}) {
      const clientId = t.clientId ?? "gatehouse-test-agent";
      const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secretFor(clientId))}`).toString("base64");
      const res = await fetch(discovery.token_endpoint, {
        method: "POST",
        headers: {
          authorization: `Basic ${basic}`,
          "content-type": "application/x-www-form-urlencoded",
          [CLAIMS_HEADER]: Buffer.from(JSON.stringify(t)).toString("base64url"),
        },
        body: new URLSearchParams({ grant_type: "client_credentials", resource: audience }).toString(),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!res.ok || !body.access_token) throw new Error(`test IdP token request failed: ${res.status} ${body.error} ${body.error_description}`);
      return body.access_token;
    },
    async sign(claims, header = {}) {
      const k = keys[0]!;
      return new SignJWT(claims).setProtectedHeader({ alg, typ: "JWT", kid: k.pub.kid, ...header }).sign(await importJWK(k.priv, alg));
    },
    publicJwks: () => ({ keys: keys.map((k) => k.pub) }),
    rotateKeys,
    identityConfig(overrides = {}, iss = {}) {
      return identitySchema.parse({ ...overrides, issuers: [{ issuer, audiences: [audience], ...iss }] });
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}
