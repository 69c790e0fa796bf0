// The OpenAPI 3.1 document served at /api/v1/openapi.json. A test checks that every route the
// server registers is described here, so the document cannot drift from the code.

const problem = { $ref: "#/components/schemas/Problem" };
const errors = {
  "401": { description: "Missing or invalid token", content: { "application/problem+json": { schema: problem } } },
  "403": { description: "Not allowed", content: { "application/problem+json": { schema: problem } } },
};

const q = (name: string, description: string, schema: Record<string, unknown> = { type: "string" }) => ({ name, in: "query", description, schema });
const auditFilters = [
  q("principal", "Exact principal subject, or a case-insensitive substring of the display name"),
  q("type", "Event type; a prefix when it ends with `.` or `*` (e.g. `review.`)"),
  q("connection", "Connection name"),
  q("session", "Session id"),
  q("decision", "allow, deny, review…"),
  q("rule", "Rule name"),
  q("from", "From this time (inclusive): ISO 8601 or Unix ms"),
  q("to", "Until this time (exclusive): ISO 8601 or Unix ms"),
  q("text", "Case-insensitive substring of the event's data JSON"),
];
const auditErrors = { ...errors, "400": { description: "Bad filter or body", content: { "application/problem+json": { schema: problem } } } };
const auditPaths = {
  "/api/v1/audit/events": {
    get: {
      summary: "Search audit events (auditor groups; audited as audit.searched). Keyset paging: pass `next` as `cursor`",
      parameters: [...auditFilters, q("cursor", "`next` from the previous page"), q("limit", "Page size (at most 1000, default 100)", { type: "integer" }), q("order", "desc (newest first, default) or asc", { enum: ["asc", "desc"] })],
      responses: { "200": { description: "{ items: AuditEvent[], next: string | null }" }, ...auditErrors },
    },
  },
  "/api/v1/audit/export": {
    get: {
      summary: "Export every matching event, oldest first, streamed, with SIEM field names (docs/audit.md); audited as audit.exported",
      parameters: [...auditFilters, q("format", "jsonl (default) or csv", { enum: ["jsonl", "csv"] })],
      responses: { "200": { description: "application/x-ndjson or text/csv" }, ...auditErrors },
    },
  },
  "/api/v1/audit/verify": {
    post: {
      summary: "Verify the hash chain, its anchor and checkpoints (stored, and any given); audited as audit.verified",
      requestBody: { content: { "application/json": { schema: { type: "object", properties: { checkpoint: { description: "Checkpoint file JSON (one or a list)" }, publicKeys: { type: "array", items: { type: "string", description: "Ed25519 public key PEM" } }, requireSigned: { type: "boolean" } } } } } },
      responses: { "200": { description: "{ ok, checked, head, anchor, checkpoints, brokenAt, warnings }" }, ...auditErrors },
    },
  },
  "/api/v1/audit/checkpoints": {
    get: { summary: "Stored checkpoints, newest first, in the export format", parameters: [q("limit", "At most this many (default 100)", { type: "integer" })], responses: { "200": { description: "{ items: Checkpoint[] }" }, ...auditErrors } },
    post: { summary: "Checkpoint the current head now (signed when audit.signingKey is set)", responses: { "200": { description: "The checkpoint" }, ...auditErrors } },
  },
};

export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: { title: "Gatehouse API", version, description: "Identity-aware gateway: connections, policy dry runs, reviews, audit. Authenticate with your OIDC access token as a bearer token." },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
      schemas: {
        Problem: {
          type: "object",
          required: ["type", "title", "status", "code"],
          properties: { type: { type: "string" }, title: { type: "string" }, status: { type: "integer" }, detail: { type: "string" }, code: { type: "string", description: "Stable Gatehouse error code, see docs/errors.md" }, hint: { type: "string" } },
        },
        Principal: {
          type: "object",
          properties: { subject: { type: "string" }, objectId: { type: "string" }, tenantId: { type: "string" }, issuer: { type: "string" }, displayName: { type: "string" }, kind: { enum: ["human", "service"] }, groups: { type: "array", items: { type: "string" } }, roles: { type: "array", items: { type: "string" } }, scopes: { type: "array", items: { type: "string" } }, clientId: { type: "string" }, expiresAt: { type: "integer" } },
        },
        Decision: {
          type: "object",
          required: ["action", "rule"],
          properties: { action: { enum: ["allow", "review", "deny"] }, rule: { type: "string" }, message: { type: "string" }, statementIndex: { type: "integer" }, review: { type: "object", properties: { approvers: { type: "array", items: { type: "string" } }, quorum: { type: "integer" }, expiresSeconds: { type: "number" }, mode: { enum: ["hold", "async"] } } } },
        },
      },
    },
    security: [{ bearer: [] }],
    paths: {
      "/healthz": { get: { summary: "Liveness", security: [], responses: { "200": { description: "The process is up" } } } },
      "/readyz": { get: { summary: "Readiness: the store answers", security: [], responses: { "200": { description: "Ready" }, "503": { description: "Store unavailable", content: { "application/problem+json": { schema: problem } } } } } },
      "/metrics": { get: { summary: "Prometheus metrics", security: [], responses: { "200": { description: "Text exposition format" } } } },
      "/api/v1/openapi.json": { get: { summary: "This document", security: [], responses: { "200": { description: "OpenAPI 3.1" } } } },
      "/api/v1/whoami": { get: { summary: "The Principal your token maps to", responses: { "200": { description: "Principal", content: { "application/json": { schema: { $ref: "#/components/schemas/Principal" } } } }, ...errors } } },
      "/api/v1/connections": { get: { summary: "Connections (no credentials)", responses: { "200": { description: "List of connections" }, ...errors } } },
      "/api/v1/reviews": { get: { summary: "Reviews, newest first", parameters: [{ name: "status", in: "query", schema: { enum: ["pending", "approved", "denied", "expired", "cancelled"] } }, { name: "connection", in: "query", schema: { type: "string" } }, { name: "limit", in: "query", schema: { type: "integer" } }], responses: { "200": { description: "List of reviews" }, ...errors } } },
      "/api/v1/reviews/events": { get: { summary: "Server-Sent Events: review.created, review.approved, review.denied, review.expired, review.cancelled, review.modified; data is the review", responses: { "200": { description: "text/event-stream" }, ...errors } } },
      "/api/v1/reviews/{id}/modify": { post: { summary: "Replace the operation (re-classified and policy-checked as the requester; counts as your approval of the replacement)", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], requestBody: { content: { "application/json": { schema: { type: "object", required: ["sql"], properties: { sql: { type: "string" }, comment: { type: "string" } } } } } }, responses: { "200": { description: "The review after the modification" }, "403": { description: "The modification is denied by policy, or you may not decide" }, "409": { description: "Not pending, or not modifiable" } } } },
      "/api/v1/reviews/{id}": { get: { summary: "One review: the exact operation, its classification, votes", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], responses: { "200": { description: "Review" }, "404": { description: "No such review" }, ...errors } } },
      "/api/v1/reviews/{id}/approve": { post: { summary: "Approve (members of the approver groups; not the requester; not service principals)", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], requestBody: { content: { "application/json": { schema: { type: "object", properties: { comment: { type: "string" } } } } } }, responses: { "200": { description: "The review after the vote" }, "409": { description: "Not pending, or already voted" }, ...errors } } },
      "/api/v1/reviews/{id}/deny": { post: { summary: "Deny (any single denial denies)", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], requestBody: { content: { "application/json": { schema: { type: "object", properties: { reason: { type: "string" } } } } } }, responses: { "200": { description: "The review after the vote" }, "409": { description: "Not pending, or already voted" }, ...errors } } },
      ...auditPaths,
      "/api/v1/policy/check": {
        post: {
          summary: "Dry run: the Decision policy would give an operation",
          requestBody: { content: { "application/json": { schema: { type: "object", required: ["connection"], properties: { connection: { type: "string" }, sql: { type: "string" }, principal: { type: "object", description: "Admins only: simulate another principal", properties: { groups: { type: "array", items: { type: "string" } }, roles: { type: "array", items: { type: "string" } }, kind: { enum: ["human", "service"] }, subject: { type: "string" } } } } } } } },
          responses: { "200": { description: "Decision and classification", content: { "application/json": { schema: { type: "object", properties: { decision: { $ref: "#/components/schemas/Decision" } } } } } }, "400": { description: "Bad request", content: { "application/problem+json": { schema: problem } } }, ...errors },
        },
      },
    },
  };
}
