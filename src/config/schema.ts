// The configuration schema: the single source for validation, defaults, the JSON Schema for
// editors (`gatehouse config schema`) and docs/configuration.md. Unknown keys are errors, so a
// typo never silently turns a control off.

import { z } from "zod";
import { RISK_FLAGS, SQL_KINDS } from "../domain/operation.ts";
import { parseDuration } from "./duration.ts";

const duration = z
  .union([z.number(), z.string()])
  .transform((v, ctx) => {
    const s = parseDuration(v);
    if (s === undefined) {
      ctx.addIssue({ code: "custom", message: `"${v}" is not a duration; write seconds or e.g. "30s", "15m", "1h", "7d"` });
      return z.NEVER;
    }
    return s;
  })
  .meta({ description: 'Seconds, or a string such as "30s", "15m", "1h", "7d".' });

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "use lower-case letters, digits, '.', '_' and '-' (at most 63 characters)");

const action = z.enum(["allow", "review", "deny"]);
const reviewMode = z.enum(["hold", "async"]);

export const issuerSchema = z
  .object({
    issuer: z.string().min(1).describe("Issuer URL exactly as in the token's `iss`. For multi-tenant Entra use `{tenantid}` in place of the tenant id and list allowedTenants."),
    audiences: z.array(z.string().min(1)).min(1).describe("Accepted `aud` values (Entra: the API's client id and/or its App ID URI)."),
    discoveryUrl: z.string().url().optional().describe("OpenID discovery document; default `<issuer>/.well-known/openid-configuration` (for `{tenantid}` issuers: the `organizations` endpoint is not assumed, set this or jwksUri)."),
    jwksUri: z.string().url().optional().describe("JWKS URL; skips discovery when set."),
    allowedTenants: z.array(z.string().min(1)).optional().describe("Accepted `tid` values. Required when the issuer contains `{tenantid}`; optional extra check otherwise."),
    algorithms: z.array(z.enum(["RS256", "ES256"])).min(1).default(["RS256", "ES256"]).describe("Accepted signing algorithms; only RS256 and ES256 can be enabled."),
    allowInsecureHttp: z.boolean().default(false).describe("Accept an http:// issuer that is not on loopback (test environments only)."),
    groupOverage: z.enum(["reject", "no-groups"]).default("reject").describe("What to do with a token whose groups did not fit (Entra overage): reject it (default), or proceed with no groups (rules keyed on groups will not match)."),
    requireAccessTokenType: z.boolean().default(true).describe("Reject JWTs whose `typ` header marks them as something other than an access token (`JWT` and `at+jwt` are accepted)."),
    name: z.string().optional().describe("Label for logs and audit; default the issuer URL."),
  })
  .strict();

export const devIssuerSchema = z
  .object({
    enabled: z.boolean().default(false).describe("Trust tokens minted by `gatehouse dev token`. Never enable in production."),
    keyFile: z.string().default("./data/dev-issuer-key.json").describe("Where the development signing key is kept (created on first use)."),
    audience: z.string().default("gatehouse-dev").describe("Audience of development tokens."),
    tokenLifetime: duration.default(3600).describe("Lifetime of minted development tokens."),
  })
  .strict();

export const identitySchema = z
  .object({
    issuers: z.array(issuerSchema).default([]).describe("Trusted OIDC issuers (Microsoft Entra ID in production)."),
    clockSkewSeconds: z.number().int().min(0).max(300).default(120).describe("Allowed clock skew for exp/nbf/iat, in seconds (at most 300)."),
    groupNames: z.record(z.string(), z.string()).default({}).describe("Map of group object ids to names; a Principal carries both, so rules may use either."),
    maxTokenBytes: z.number().int().min(512).max(65536).default(16384).describe("Largest token accepted, in bytes."),
    jwksCacheSeconds: z.number().int().min(10).default(600).describe("How long a fetched JWKS is trusted before refresh."),
    jwksRefetchCooldownSeconds: z.number().int().min(1).default(30).describe("Minimum interval between JWKS refetches triggered by an unknown `kid`."),
    devIssuer: devIssuerSchema.default({ enabled: false, keyFile: "./data/dev-issuer-key.json", audience: "gatehouse-dev", tokenLifetime: 3600 }),
  })
  .strict();

export const postgresTargetSchema = z
  .object({
    host: z.string().min(1).describe("Target host, as the agent sees it."),
    port: z.number().int().min(1).max(65535).default(5432),
    database: z.string().min(1),
    user: z.string().min(1),
    password: z.string().optional().describe("Credential reference resolved by the agent: `env:NAME` or `file:/path` (a literal is accepted but discouraged)."),
    tls: z.enum(["disable", "prefer", "require", "verify-full"]).default("prefer").describe("TLS from the agent to the target."),
    ca: z.string().optional().describe("CA bundle reference (`file:/path`) for verify-full."),
  })
  .strict();

export const httpTargetSchema = z
  .object({
    url: z.string().url().describe("Base URL of the target, as the agent sees it (e.g. https://ci.internal:8443/api); the caller's path after /<connection> is appended."),
    auth: z
      .object({
        type: z.enum(["bearer", "basic", "header"]).describe("bearer: `Authorization: Bearer <secret>`; basic: `Authorization: Basic user:secret`; header: `<header>: <secret>`."),
        secret: z.string().describe("Credential reference resolved by the agent (`env:NAME` or `file:/path`)."),
        username: z.string().optional().describe("basic only: the user name."),
        header: z.string().regex(/^[A-Za-z0-9-]+$/).optional().describe("header only: the header name, e.g. X-API-Key."),
      })
      .strict()
      .optional()
      .describe("The credential the agent injects; the caller's own Authorization header never reaches the target."),
    hosts: z.array(z.string().min(1)).default([]).describe("Host header values that select this connection (besides the /<connection>/ path prefix)."),
    ca: z.string().optional().describe("CA bundle reference (`file:/path`) to verify an https target."),
    timeout: duration.default(60).describe("Time allowed for the target's response headers (a silence in the middle of a body: listeners.http.responseIdleSeconds)."),
    git: z.boolean().default(false).describe("The target speaks git smart HTTP: pushes are judged per ref (see docs/policy.md)."),
  })
  .strict()
  .superRefine((h, ctx) => {
    if (h.auth?.type === "header" && !h.auth.header) ctx.addIssue({ code: "custom", path: ["auth", "header"], message: "auth type `header` needs `header:` (its name)" });
    if (h.auth && !/^(env|file):./.test(h.auth.secret)) ctx.addIssue({ code: "custom", path: ["auth", "secret"], message: "the credential must be a reference the agent resolves (env:NAME or file:/path)" });
  });

export const connectionPolicySchema = z
  .object({
    default: action.default("deny").describe("Decision when no rule matches."),
    unparseable: z.enum(["review", "deny"]).default("review").describe("Decision for input that cannot be parsed; never allow."),
    reviewMode: reviewMode.default("hold").describe("hold: the client waits; async: fail at once with the review id, the identical retry runs after approval."),
    approvers: z.array(z.string()).default([]).describe("Approver groups for review decisions that name none."),
    reviewExpires: duration.default(3600).describe("Default validity of a review."),
    notify: z.array(z.string()).default([]).describe("Notifier names told about reviews on this connection when the rule names none."),
  })
  .strict();

export const connectionSchema = z
  .object({
    name,
    protocol: z.enum(["postgres", "http"]).describe("Target protocol: `postgres` (PostgreSQL listener) or `http` (HTTP listener: internal APIs, CI systems, git over smart HTTP)."),
    agent: z
      .union([name, z.array(name).min(1)])
      .default("embedded")
      .describe("Agent(s) serving this connection: `embedded` (the in-process agent, default) or the name(s) of network-resident agents (`gatehouse agents create NAME`); with several, sessions go to any connected one."),
    labels: z.record(z.string(), z.string()).default({}).describe("Free-form labels policies can match (e.g. env: prod)."),
    description: z.string().optional(),
    postgres: postgresTargetSchema.optional(),
    http: httpTargetSchema.optional(),
    policy: connectionPolicySchema.default({ default: "deny", unparseable: "review", reviewMode: "hold", approvers: [], reviewExpires: 3600, notify: [] }),
    recording: z
      .object({
        onFailure: z.enum(["strict", "best-effort"]).default("strict").describe("When the session's recording cannot be written: strict ends the session (GH-REC-001); best-effort keeps it going and flags the recording `failed`."),
      })
      .strict()
      .default({ onFailure: "strict" }),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.protocol === "postgres" && !c.postgres) {
      ctx.addIssue({ code: "custom", path: ["postgres"], message: "a postgres connection needs a `postgres:` target (host, database, user)" });
    }
    if (c.protocol === "http" && !c.http) ctx.addIssue({ code: "custom", path: ["http"], message: "an http connection needs an `http:` target (url)" });
    if (c.protocol !== "http" && c.http) ctx.addIssue({ code: "custom", path: ["http"], message: "`http:` only applies to protocol: http" });
    if (c.protocol !== "postgres" && c.postgres) ctx.addIssue({ code: "custom", path: ["postgres"], message: "`postgres:` only applies to protocol: postgres" });
    const agents = Array.isArray(c.agent) ? c.agent : [c.agent];
    const remote = agents.some((a) => a !== "embedded");
    if (remote && agents.includes("embedded")) ctx.addIssue({ code: "custom", path: ["agent"], message: "a connection is served either by the embedded agent or by network-resident agents, not both" });
    // In remote mode the gateway must never hold a target credential: only references, which
    // the agent resolves in its own environment.
    for (const key of ["password", "ca"] as const) {
      const v = c.postgres?.[key];
      if (remote && v !== undefined && !/^(env|file):./.test(v)) {
        ctx.addIssue({ code: "custom", path: ["postgres", key], message: `a connection served by a network-resident agent takes \`${key}\` only as a reference the agent resolves (env:NAME or file:/path), never a literal value in the gateway's configuration` });
      }
    }
  });

const stringList = z.array(z.string().min(1));

export const ruleSchema = z
  .object({
    name,
    description: z.string().optional(),
    principals: z
      .object({
        groups: stringList.optional().describe("Matches members of any of these groups (names or object ids)."),
        roles: stringList.optional().describe("Matches holders of any of these app roles."),
        kind: z.enum(["human", "service"]).optional().describe("service: app-only tokens (AI agents); human: delegated user tokens."),
        subjects: stringList.optional().describe("Matches these Principal subjects (`tid/oid`) or object ids."),
      })
      .strict()
      .optional(),
    connections: z
      .object({
        names: stringList.optional().describe("Connection names; `*` wildcards allowed."),
        labels: z.record(z.string(), z.string()).optional().describe("All of these labels must match."),
      })
      .strict()
      .optional(),
    operations: z
      .object({
        protocols: z.array(z.enum(["postgres", "http", "ssh"])).optional(),
        kinds: z.array(z.enum(SQL_KINDS)).optional().describe("SQL statement kinds."),
        flags: z.array(z.enum(RISK_FLAGS)).optional().describe("Classifier risk flags."),
        tables: stringList.optional().describe("Tables (`*` wildcards; unqualified names match any schema)."),
        statements: stringList.optional().describe("Parse-tree statement node types, e.g. DropStmt, VariableSetStmt."),
        methods: z.array(z.string().regex(/^[A-Za-z]+$|^\*$/)).optional().describe("HTTP methods (case-insensitive; `*` any)."),
        paths: stringList.optional().describe("HTTP paths after normalization (`*` one segment, `**` any depth; see docs/policy.md)."),
        query: z.record(z.string(), z.string()).optional().describe("HTTP query parameters that must all be present with matching values (globs)."),
        headers: z.record(z.string(), z.string()).optional().describe("HTTP request headers that must all match (names case-insensitive, values globs)."),
        json: z.record(z.string(), z.string()).optional().describe("JSON body fields by JSON Pointer (`/spec/env`) that must all match (globs on the value as text)."),
        git: z
          .object({
            actions: z.array(z.enum(["fetch", "push", "create", "update", "delete", "force"])).optional().describe("fetch; push (any ref update); create, update, delete a ref; force: a non-fast-forward update."),
            refs: stringList.optional().describe("Ref names (`refs/heads/main`, or short `main`, `release/*`)."),
          })
          .strict()
          .optional()
          .describe("git smart-HTTP conditions: a push is judged per updated ref."),
      })
      .strict()
      .optional(),
    decision: action,
    message: z.string().optional().describe("Shown to the caller on deny and review."),
    review: z
      .object({
        approvers: stringList.optional(),
        quorum: z.number().int().min(1).max(10).default(1),
        expires: duration.optional(),
        mode: reviewMode.optional(),
        notify: z.array(z.string()).optional().describe("Notifier names (from `notifiers`) told about reviews this rule opens; default the connection's."),
      })
      .strict()
      .optional(),
  })
  .strict();

export const notifierSchema = z
  .object({
    name,
    type: z.enum(["webhook", "slack", "teams"]).describe("webhook: signed JSON; slack / teams: incoming-webhook message payloads."),
    url: z.string().url().describe("Where to POST. Slack/Teams incoming-webhook URLs are secrets: use ${ENV} references."),
    secret: z.string().optional().describe("webhook only: HMAC-SHA256 key (`env:NAME`/`file:/path` reference or literal) for the X-Gatehouse-Signature header."),
    events: z.array(z.enum(["created", "decided"])).default(["created", "decided"]).describe("Which review events to send."),
    timeout: duration.default(5).describe("Per-attempt timeout."),
    retries: z.number().int().min(0).max(10).default(5).describe("Retries after a failed attempt, with exponential backoff from 1 s."),
  })
  .strict();

export const storeSchema = z
  .object({
    url: z.string().default("sqlite:./data/gatehouse.db").describe("`sqlite:PATH` (embedded, default), `sqlite::memory:`, or `postgres://…` (production, shared by replicas)."),
    poolSize: z.number().int().min(1).max(100).default(10).describe("PostgreSQL pool size."),
  })
  .strict();

export const recordingSchema = z
  .object({
    enabled: z.boolean().default(true).describe("Record every session byte for byte (both directions) with its decisions. Off only where the data must not be kept."),
    storage: z.enum(["store", "directory"]).default("store").describe("store: chunks in the store (SQLite/PostgreSQL); directory: one append-only file per session under `directory`."),
    directory: z.string().default("./data/recordings").describe("Where recordings go when storage is `directory`."),
    maxSessionBytes: z.number().int().min(1024).default(256 * 1024 * 1024).describe("Bytes recorded per session (both directions); past it the byte frames stop and the recording is marked truncated (events go on within a small allowance); the session goes on."),
    flushInterval: duration.default(0.2).describe("How often buffered recording data is written (batched, off the forwarding path)."),
    compression: z
      .enum(["brotli", "none"])
      .default("brotli")
      .describe("brotli: each chunk is stored as one Brotli-compressed frame when that is smaller (quality 1: typically 3–30 % of the size, and cheaper than writing the bytes; compressed off the event loop). none: chunks are stored as recorded (format version 1 readers can read them)."),
    retention: duration.default(30 * 86400).describe("Recordings older than this are pruned by the retention job (0 keeps them forever). Session rows and the audit trail stay."),
  })
  .strict();

export const auditSchema = z
  .object({
    auditorGroups: z.array(z.string()).default([]).describe("Groups allowed to search and export the audit trail and to list, replay and export recordings (every read is itself audited)."),
    signingKey: z.string().optional().describe("Ed25519 private key (PEM, `file:/path` or `env:NAME` reference) that signs audit checkpoints."),
    checkpointInterval: duration.default(3600).describe("How often the gateway writes an audit checkpoint (the chain head, signed when signingKey is set); 0 turns periodic checkpoints off."),
    retention: duration.default(0).describe("Audit events older than this may be pruned, but only up to a checkpoint, so `audit verify` still anchors the remaining chain; 0 keeps every event."),
  })
  .strict();

export const retentionSchema = z
  .object({
    interval: duration.default(3600).describe("How often the gateway runs the retention job (`gatehouse retention run` does it once); 0 turns the schedule off."),
  })
  .strict();

export const postgresListenerSchema = z
  .object({
    enabled: z.boolean().default(true),
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(15432),
    tls: z
      .object({
        cert: z.string().optional().describe("PEM certificate reference (`file:/path` or `env:NAME`)."),
        key: z.string().optional().describe("PEM private key reference."),
        selfSigned: z.boolean().default(true).describe("Without cert/key, generate a self-signed certificate on first start (development; needs `openssl`)."),
        selfSignedDir: z.string().default("./data/tls").describe("Where the self-signed certificate and key are kept."),
      })
      .strict()
      .default({ selfSigned: true, selfSignedDir: "./data/tls" }),
    allowCleartextLoopback: z.boolean().default(false).describe("Accept the token as a cleartext password without TLS when the client is on loopback."),
    maxSessions: z.number().int().min(1).max(100_000).default(1000).describe("Client connections accepted at once (each holds a target connection); more are refused with SQLSTATE 53300."),
  })
  .strict();

export const httpListenerSchema = z
  .object({
    enabled: z.boolean().default(true).describe("Serve the HTTP gate (only started when at least one connection has protocol: http)."),
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(18080),
    maxBodyBytes: z.number().int().min(1024).max(1 << 30).default(32 * 1024 * 1024).describe("Request bodies up to this size are read whole: judged (JSON conditions, git pushes) and bound to approvals. Larger ones are streamed unread when allowed (see streamLargeBodies)."),
    streamLargeBodies: z.boolean().default(true).describe("Stream bodies larger than maxBodyBytes to the target when the decision is allow (rules on body content then match for deny/review, never for allow; what needs review is refused). false: 413."),
    responseIdleSeconds: duration.default(300).describe("A target silent this long in the middle of a response body while the client is reading is given up on: the body and the client's connection are closed (the sockets do not wait for ever). 0: never. Raise it for long-lived streams that can go quiet for longer (server-sent events without heartbeats, `watch` or `logs -f` endpoints)."),
    maxHoldSeconds: duration.default(300).describe("A request held for review waits at most this long, then gets 409 with the review id (the review stays open; the identical retry runs once approved)."),
    tls: z
      .object({ cert: z.string().describe("PEM certificate reference (`file:/path` or `env:NAME`)."), key: z.string().describe("PEM private key reference.") })
      .strict()
      .optional()
      .describe("Serve the HTTP gate over HTTPS. Without it, callers' tokens would cross the network in clear: plain HTTP is then accepted from loopback only, unless allowCleartext."),
    allowCleartext: z.boolean().default(false).describe("Accept plain-HTTP requests from non-loopback clients (only behind a TLS-terminating proxy on a network you trust)."),
    recordBodyBytes: z.number().int().min(0).default(1024 * 1024).describe("Response body bytes recorded per request (request bodies are recorded whole: they are bounded by maxBodyBytes); the rest is counted, not kept."),
    gitMirrorDir: z.string().default("./data/git-mirrors").describe("Where the agent keeps bare mirrors of git targets, to tell fast-forward pushes from force pushes."),
  })
  .strict();

export const apiSchema = z
  .object({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(8080),
    publicUrl: z.string().url().optional().describe("URL reviewers use to reach the API/UI (links in notices)."),
    adminGroups: z.array(z.string()).default([]).describe("Groups allowed to read configuration and audit data over the API."),
    tls: z
      .object({
        cert: z.string().describe("PEM certificate (chain) reference (`file:/path` or `env:NAME`)."),
        key: z.string().describe("PEM private key reference."),
      })
      .strict()
      .optional()
      .describe("Serve the API — and the agents' tunnel (wss://) — over HTTPS. Without it the API is plain HTTP: put TLS in front of it."),
  })
  .strict();

export const agentIdentitySchema = z
  .object({
    name,
    clientIds: z.array(z.string().min(1)).min(1).describe("Application (client) ids whose app-only access tokens, from a trusted issuer, authenticate as this agent (instead of a `gatehouse agents create` secret)."),
  })
  .strict();

export const configSchema = z
  .object({
    identity: identitySchema.default(identitySchema.parse({})),
    connections: z.array(connectionSchema).default([]),
    notifiers: z.array(notifierSchema).default([]).describe("Where review notifications go (rules and connections name them)."),
    agents: z.array(agentIdentitySchema).default([]).describe("Network-resident agents that authenticate with OIDC client-credentials tokens of their own (agents with `gatehouse agents create` secrets need no entry)."),
    reviews: z
      .object({
        breakGlassGroups: z.array(z.string()).default([]).describe("Members may approve any review alone (audited as review.break_glass). Empty (off) by default."),
      })
      .strict()
      .default({ breakGlassGroups: [] }),
    policies: z.array(ruleSchema).default([]).describe("Ordered rules; the most restrictive matching decision wins (deny > review > allow), ties go to the earlier rule."),
    store: storeSchema.default({ url: "sqlite:./data/gatehouse.db", poolSize: 10 }),
    recording: recordingSchema.default(recordingSchema.parse({})),
    audit: auditSchema.default(auditSchema.parse({})),
    retention: retentionSchema.default(retentionSchema.parse({})),
    listeners: z
      .object({ postgres: postgresListenerSchema.default(postgresListenerSchema.parse({})), http: httpListenerSchema.default(httpListenerSchema.parse({})) })
      .strict()
      .default({ postgres: postgresListenerSchema.parse({}), http: httpListenerSchema.parse({}) }),
    api: apiSchema.default(apiSchema.parse({})),
    logging: z
      .object({ level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info") })
      .strict()
      .default({ level: "info" }),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.connections.forEach((conn, i) => {
      if (seen.has(conn.name)) ctx.addIssue({ code: "custom", path: ["connections", i, "name"], message: `duplicate connection name "${conn.name}"` });
      seen.add(conn.name);
    });
    const rules = new Set<string>();
    c.policies.forEach((r, i) => {
      if (rules.has(r.name)) ctx.addIssue({ code: "custom", path: ["policies", i, "name"], message: `duplicate rule name "${r.name}"` });
      rules.add(r.name);
      if (r.decision !== "review" && r.review) ctx.addIssue({ code: "custom", path: ["policies", i, "review"], message: "`review` settings only apply to decision: review" });
    });
    const agentClients = new Map<string, string>();
    c.agents.forEach((a, i) => {
      if (a.name === "embedded") ctx.addIssue({ code: "custom", path: ["agents", i, "name"], message: "`embedded` is the in-process agent" });
      for (const id of a.clientIds) {
        if (agentClients.has(id) && agentClients.get(id) !== a.name) ctx.addIssue({ code: "custom", path: ["agents", i, "clientIds"], message: `client id ${id} already authenticates agent "${agentClients.get(id)}"` });
        agentClients.set(id, a.name);
      }
    });
    const notifiers = new Set(c.notifiers.map((n) => n.name));
    c.notifiers.forEach((n, i) => {
      if (n.type !== "webhook" && n.secret) ctx.addIssue({ code: "custom", path: ["notifiers", i, "secret"], message: "only webhook notifiers are signed" });
    });
    c.policies.forEach((r, i) => {
      for (const n of r.review?.notify ?? []) if (!notifiers.has(n)) ctx.addIssue({ code: "custom", path: ["policies", i, "review", "notify"], message: `no notifier named "${n}"` });
    });
    c.connections.forEach((conn, i) => {
      for (const n of conn.policy.notify) if (!notifiers.has(n)) ctx.addIssue({ code: "custom", path: ["connections", i, "policy", "notify"], message: `no notifier named "${n}"` });
    });
    c.identity.issuers.forEach((iss, i) => {
      if (iss.issuer.includes("{tenantid}") && !iss.allowedTenants?.length) {
        ctx.addIssue({ code: "custom", path: ["identity", "issuers", i, "allowedTenants"], message: "a `{tenantid}` issuer must list allowedTenants" });
      }
    });
  });

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type IssuerConfig = z.infer<typeof issuerSchema>;
export type IdentityConfig = z.infer<typeof identitySchema>;
export type RuleConfig = z.infer<typeof ruleSchema>;
export type ConnectionConfig = z.infer<typeof connectionSchema>;
export type NotifierConfig = z.infer<typeof notifierSchema>;
export type RecordingConfig = z.infer<typeof recordingSchema>;
export type AuditConfig = z.infer<typeof auditSchema>;

export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
}
