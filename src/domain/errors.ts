// The one registry of user-facing errors. Each code is stable, documented in docs/errors.md
// (a test fails on an undocumented code), and its message says what to do. User errors are
// kept apart from internal failures: only `InternalError`s are bugs.

export interface ErrorDef {
  code: string;
  /** HTTP status used when the error reaches an HTTP caller. */
  status: number;
  /** SQLSTATE used when the error reaches a PostgreSQL client. */
  sqlstate: string;
  title: string;
  /** What the user should do about it. */
  hint: string;
}

function def(code: string, status: number, sqlstate: string, title: string, hint: string): ErrorDef {
  return { code, status, sqlstate, title, hint };
}

export const ERRORS = {
  // configuration
  CONFIG_INVALID: def("GH-CONFIG-001", 500, "F0000", "Configuration is invalid", "Fix the keys listed above; `gatehouse config check FILE` validates a file without starting anything."),
  CONFIG_ENV_MISSING: def("GH-CONFIG-002", 500, "F0000", "Configuration references an unset environment variable", "Export the variable named in the message, or remove the ${VAR} reference."),
  CONFIG_UNREADABLE: def("GH-CONFIG-003", 500, "F0000", "Configuration file cannot be read or parsed", "Check the path and that the file is valid YAML."),
  LISTEN_FAILED: def("GH-CONFIG-004", 500, "F0000", "The gateway cannot listen on a configured address", "Another process holds the port (EADDRINUSE), the host is not an address of this machine (EADDRNOTAVAIL), or a port below 1024 needs privileges (EACCES): stop the other process or change the key named in the message (port 0 picks a free port)."),
  // identity
  AUTH_TOKEN_MISSING: def("GH-AUTH-001", 401, "28000", "No access token was presented", "Send your OIDC access token: `Authorization: Bearer <token>` over HTTP, or as the password for PostgreSQL."),
  AUTH_TOKEN_MALFORMED: def("GH-AUTH-002", 401, "28P01", "The access token is not a well-formed JWT", "Send the raw access token (three base64url parts separated by dots), not an ID token or a refresh token."),
  AUTH_SIGNATURE_INVALID: def("GH-AUTH-003", 401, "28P01", "The access token's signature does not verify", "Request a fresh token from the configured identity provider; tokens from other issuers or edited tokens are rejected."),
  AUTH_TOKEN_EXPIRED: def("GH-AUTH-004", 401, "28P01", "The access token has expired", "Request a new access token and reconnect."),
  AUTH_TOKEN_NOT_YET_VALID: def("GH-AUTH-005", 401, "28P01", "The access token is not valid yet (nbf in the future)", "Check the clock of the machine that issued or uses the token; allowed skew is identity.clockSkewSeconds."),
  AUTH_ISSUER_INVALID: def("GH-AUTH-006", 401, "28P01", "The access token was issued by an issuer this gateway does not trust", "Request the token from the issuer configured in identity.issuers[].issuer (for Entra: your tenant's v2.0 endpoint)."),
  AUTH_AUDIENCE_INVALID: def("GH-AUTH-007", 401, "28P01", "The access token is for another audience", "Request the token for the gateway's application (scope `api://<gateway-app-id>/.default`); accepted audiences are identity.issuers[].audiences."),
  AUTH_ALGORITHM_REJECTED: def("GH-AUTH-008", 401, "28P01", "The access token uses a signing algorithm the gateway refuses", "Only RS256 and ES256 signed tokens are accepted; `none` and HMAC tokens never are."),
  AUTH_KEY_UNKNOWN: def("GH-AUTH-009", 401, "28P01", "The access token is signed with a key the issuer does not publish", "Request a fresh token; if the issuer has just rotated keys, retry in a minute."),
  AUTH_TENANT_NOT_ALLOWED: def("GH-AUTH-010", 401, "28P01", "The access token's tenant is not allowed", "Use a token from one of the tenants in identity.issuers[].allowedTenants."),
  AUTH_GROUPS_OVERAGE: def("GH-AUTH-011", 401, "28P01", "The token has too many groups to list them (group overage)", "Ask the administrator to emit only groups assigned to the application (groupMembershipClaims: ApplicationGroup), or set identity.issuers[].groupOverage to `no-groups` deliberately."),
  AUTH_CLAIM_MISSING: def("GH-AUTH-012", 401, "28P01", "The access token lacks a required claim", "The token must carry exp, iat/nbf as issued, and a subject (oid or sub); request a standard access token."),
  AUTH_ISSUER_UNREACHABLE: def("GH-AUTH-013", 503, "08006", "The identity provider's keys could not be fetched", "The gateway cannot reach the issuer's discovery or JWKS endpoint; retry shortly and check network egress to the issuer."),
  AUTH_INSECURE_ISSUER: def("GH-AUTH-014", 500, "F0000", "An http:// issuer is configured outside loopback", "Use an https:// issuer, or set identity.issuers[].allowInsecureHttp: true for a test environment you control."),
  AUTH_TOKEN_TOO_LARGE: def("GH-AUTH-015", 401, "28P01", "The access token is larger than the gateway accepts", "Tokens over identity.maxTokenBytes are refused; request a token without unneeded claims."),
  AUTH_TOKEN_TYPE_INVALID: def("GH-AUTH-016", 401, "28P01", "The JWT is not an access token", "Send an OIDC access token for the gateway, not an ID token or a logout token."),
  // policy
  POLICY_DENIED: def("GH-POLICY-001", 403, "42501", "The operation was denied by policy", "The rule named in the message forbids this operation; ask the policy owners if you need it."),
  POLICY_REVIEW_REQUIRED: def("GH-POLICY-002", 409, "42501", "The operation needs a human review", "A review was opened; once a reviewer approves it, send the identical operation again (async mode) or wait (hold mode)."),
  POLICY_EVALUATION_FAILED: def("GH-POLICY-003", 500, "XX000", "Policy could not be evaluated", "The operation was refused because the gate could not decide (fail closed); check the gateway's logs."),
  POLICY_UNKNOWN_CONNECTION: def("GH-POLICY-004", 404, "28000", "Unknown connection", "Use one of the connection names in the gateway's configuration (the `connections` list; GET /api/v1/connections on the API lists them)."),
  // reviews
  REVIEW_NOT_FOUND: def("GH-REVIEW-001", 404, "XX000", "No such review", "Check the review id (`gatehouse reviews list`)."),
  REVIEW_NOT_ALLOWED: def("GH-REVIEW-002", 403, "42501", "You may not decide this review", "Reviews are decided by members of the review's approver groups, with their own human token; requesters and AI agents cannot approve."),
  REVIEW_NOT_PENDING: def("GH-REVIEW-003", 409, "XX000", "The review is no longer pending", "It was already decided, expired or cancelled; the operation must be sent again for a new review."),
  REVIEW_ALREADY_VOTED: def("GH-REVIEW-004", 409, "XX000", "You already voted on this review", "Each person counts once toward the quorum; another approver must vote."),
  REVIEW_DENIED: def("GH-REVIEW-005", 403, "42501", "The operation was denied by a reviewer", "Read the reviewer's comment in the message; change the operation or talk to the reviewer."),
  REVIEW_EXPIRED: def("GH-REVIEW-006", 403, "42501", "The review expired before anyone decided", "Send the operation again to open a new review, and ask an approver to look at it."),
  REVIEW_CANCELLED: def("GH-REVIEW-007", 403, "57014", "The review was cancelled", "The session that was waiting for it ended; send the operation again."),
  // PostgreSQL gate
  PG_TLS_REQUIRED: def("GH-PG-001", 400, "28000", "TLS is required before the token may be sent", "Connect with sslmode=require (or verify-full with the gateway's CA); the token is your password and is only accepted over TLS."),
  PG_PROTOCOL_VIOLATION: def("GH-PG-002", 400, "08P01", "The client sent a malformed or unexpected protocol message", "Use a standard PostgreSQL client (libpq, node-postgres, JDBC…); the session was closed to protect the gateway."),
  PG_TARGET_UNAVAILABLE: def("GH-PG-003", 503, "08006", "The target database could not be reached or refused the gateway's login", "The connection's target or credentials are wrong or the database is down; an operator should check the agent's log and the connection's postgres settings."),
  PG_UNSUPPORTED: def("GH-PG-004", 400, "0A000", "This PostgreSQL feature is not available through Gatehouse", "Use a regular (non-replication) session without GSSAPI, and SQL instead of fastpath function calls."),
  PG_TARGET_LOST: def("GH-PG-005", 503, "08006", "The connection to the target database was lost", "Reconnect; if it keeps happening, an operator should check the target and the agent."),
  PG_STARTUP_INVALID: def("GH-PG-006", 400, "08P01", "The startup message lacks a database name", "Set dbname to the Gatehouse connection name, e.g. psql \"host=gw port=15432 dbname=pg-prod user=agent sslmode=require\"."),
  PG_LOGIN_TIMEOUT: def("GH-PG-007", 400, "08006", "The client did not finish logging in in time", "Send the access token as the password promptly (PGPASSWORD=<token>)."),
  PG_SETTINGS_AMBIGUOUS: def("GH-PG-009", 400, "0A000", "The statement could read differently on the server than the gate read it", "Statement text with backslashes or non-ASCII characters is judged only while the session reads text as the gate does: standard_conforming_strings on, client_encoding UTF8, and no earlier statement still running. Turn the setting back on, connect with UTF8, or send the statement once the previous one has completed; bound parameter values are never affected."),
  PG_TOO_MANY_SESSIONS: def("GH-PG-008", 503, "53300", "The gateway has reached its session limit", "Close idle connections (use a pool with a sensible maximum) or ask an operator to raise listeners.postgres.maxSessions."),
  // HTTP gate
  HTTP_NO_CONNECTION: def("GH-HTTP-001", 404, "XX000", "No HTTP connection matches this request", "Address the connection by its name as the first path segment (http://gateway:PORT/<connection>/…) or by one of its configured hosts."),
  HTTP_TARGET_REJECTED: def("GH-HTTP-002", 400, "XX000", "The request path or target cannot be judged", "Send a plain origin-form path: no encoded slashes or backslashes, no double percent-encoding, no `..` above the root, no control characters."),
  HTTP_BODY_TOO_LARGE: def("GH-HTTP-003", 413, "XX000", "The request body is larger than the gateway accepts", "Bodies are read whole to be judged and bound to approvals; keep them under listeners.http.maxBodyBytes or ask an operator to raise it."),
  HTTP_GIT_MALFORMED: def("GH-HTTP-004", 400, "XX000", "The git request could not be read", "Use a standard git client over smart HTTP; the push's ref-update commands were malformed."),
  HTTP_TLS_REQUIRED: def("GH-HTTP-006", 403, "28000", "The HTTP gate accepts tokens only over TLS", "Use https:// (the gateway's listeners.http.tls), or, behind a TLS-terminating proxy, set listeners.http.allowCleartext."),
  HTTP_MALFORMED: def("GH-HTTP-007", 400, "XX000", "The HTTP request is malformed", "Send a well-formed HTTP/1.1 request: CRLF line ends, no folded or duplicate Host/Content-Length fields, Content-Length or `Transfer-Encoding: chunked` but not both. No fragment (#) in the request target. The detail names what was wrong; the status may also be 405, 413, 414 (a target over 8192 characters), 417, 431, 501 or 505."),
  HTTP_UPGRADE_REFUSED: def("GH-HTTP-008", 502, "08006", "The target did not switch protocols", "The target answered the upgrade (WebSocket) request with something other than 101 Switching Protocols — the detail has its status — so the connection was closed rather than passed through unjudged. Check that the path on the target accepts the upgrade."),
  HTTP_TARGET_UNAVAILABLE: def("GH-HTTP-005", 502, "08006", "The HTTP target did not answer", "The connection's target is down, unreachable from the agent, or too slow (http.timeout); an operator should check the agent's log."),
  // agents
  AGENT_UNAVAILABLE: def("GH-AGENT-001", 503, "08006", "The agent serving this connection is not available", "Start (or reconnect) the agent named in the message; `gatehouse agents list` shows which agents are connected."),
  AGENT_AUTH_FAILED: def("GH-AGENT-002", 401, "28000", "The agent's secret was not accepted", "Use the secret printed by `gatehouse agents create NAME` (GATEHOUSE_AGENT_TOKEN); a revoked agent needs a new one."),
  AGENT_EXISTS: def("GH-AGENT-003", 409, "XX000", "An agent with this name already exists", "Pick another name, or `gatehouse agents revoke NAME` first and create it again for a new secret."),
  AGENT_NOT_FOUND: def("GH-AGENT-004", 404, "XX000", "No such agent", "`gatehouse agents list` shows the agents this gateway knows."),
  AGENT_VERSION_MISMATCH: def("GH-AGENT-005", 400, "XX000", "The agent and the gateway share no tunnel protocol version", "Upgrade the older of the two; the message names the versions each side speaks."),
  AGENT_TARGET_REFUSED: def("GH-AGENT-007", 502, "08004", "The agent refused to open this target", "The agent's targets file (gatehouse agent --targets) does not list this target, or this credential for it. If the connection's configuration is right, add the target (and its credential reference) to the agent's file; if it is not, the gateway's configuration may have been changed: check it, and the agent's log."),
  AGENT_INSECURE_GATEWAY: def("GH-AGENT-006", 400, "XX000", "The agent refuses to send its secret over an unencrypted connection", "Use a wss:// (or https://) gateway URL; plain ws:// is accepted only to loopback, or with --allow-insecure on a network you trust."),
  REVIEW_MODIFY_DENIED: def("GH-REVIEW-008", 403, "42501", "The modified operation is denied by policy", "A reviewer cannot replace an operation with one that policy forbids; change the modification."),
  REVIEW_MODIFY_UNSUPPORTED: def("GH-REVIEW-009", 409, "0A000", "This review cannot be modified", "Statements sent with bound parameters (extended protocol) can be approved or denied, not rewritten; deny it with a reason instead."),
  // store
  STORE_UNAVAILABLE: def("GH-STORE-001", 503, "08006", "The gateway's store is unavailable", "The gateway refuses operations it cannot audit; check the store (store.url) and /readyz."),
  // recording
  RECORDING_FAILED: def("GH-REC-001", 503, "58030", "The session's recording could not be written", "This connection requires a complete recording (recording.onFailure: strict), so the session was ended; an operator should check the store or recording directory and /readyz, then reconnect."),
  SESSION_NOT_FOUND: def("GH-REC-002", 404, "XX000", "No such session", "Check the session id (`gatehouse sessions list`)."),
  RECORDING_PRUNED: def("GH-REC-003", 410, "XX000", "The session's recording is no longer kept", "Recordings older than recording.retention are pruned; the session row and its audit events remain (`gatehouse sessions show ID`)."),
  RECORDING_UNREADABLE: def("GH-REC-004", 500, "XX000", "The recording is damaged", "A recording chunk failed its integrity check; the message names the first bad chunk. Earlier chunks are still shown."),
  // audit trail
  AUDIT_SIGNING_KEY_INVALID: def("GH-AUDIT-001", 500, "F0000", "The audit signing key cannot be used", "audit.signingKey must reference an Ed25519 private key in PEM (create one with `openssl genpkey -algorithm ed25519`)."),
  AUDIT_CHECKPOINT_INVALID: def("GH-AUDIT-002", 400, "XX000", "The audit checkpoint is not valid", "The checkpoint file must be one printed by `gatehouse audit checkpoints` (JSON with seq, hash, at and optionally signature)."),
  AUDIT_PUBLIC_KEY_INVALID: def("GH-AUDIT-003", 400, "XX000", "The public key for checkpoint signatures cannot be used", "Pass the Ed25519 public key in PEM (`openssl pkey -in signing.pem -pubout`), or the private key file itself."),
  AUDIT_PRUNE_REFUSED: def("GH-AUDIT-004", 409, "XX000", "Audit events were not pruned because the chain they belong to does not verify", "Run `gatehouse audit verify --config F` and investigate the broken link it names; pruning never deletes evidence of tampering."),
  // API
  API_NOT_FOUND: def("GH-API-001", 404, "XX000", "No such resource", "Check the path against the OpenAPI document at /api/v1/openapi.json."),
  API_BAD_REQUEST: def("GH-API-002", 400, "XX000", "The request is invalid", "Fix the request fields listed in the problem details."),
  API_UNREACHABLE: def("GH-API-004", 502, "08006", "The gateway API did not answer as expected", "Check --api / GATEHOUSE_API (the gateway's API URL) and that the gateway is running."),
  API_FORBIDDEN: def("GH-API-003", 403, "42501", "You are not allowed to do this", "This action needs one of the groups listed in the message."),
  // development identity
  DEV_ISSUER_DISABLED: def("GH-DEV-001", 400, "F0000", "The development issuer is not enabled", "Set identity.devIssuer.enabled: true in the configuration (never in production) or use a real identity provider."),
} as const satisfies Record<string, ErrorDef>;

export type ErrorKey = keyof typeof ERRORS;

/** A user-facing error: bad config, bad token, denied operation. Never a bug. */
export class GatehouseError extends Error {
  readonly def: ErrorDef;
  readonly detail: string;
  readonly extra: Record<string, unknown>;
  constructor(key: ErrorKey | ErrorDef, detail?: string, extra: Record<string, unknown> = {}) {
    const d = typeof key === "string" ? ERRORS[key] : key;
    super(detail ? `${d.title}: ${detail}` : d.title);
    this.name = "GatehouseError";
    this.def = d;
    this.detail = detail ?? "";
    this.extra = extra;
  }
  get code(): string {
    return this.def.code;
  }
  /** One line for a human: what happened, then what to do. */
  describe(): string {
    return `${this.def.code} ${this.message}. ${this.def.hint}`;
  }
}

export function isGatehouseError(e: unknown): e is GatehouseError {
  return e instanceof GatehouseError;
}
