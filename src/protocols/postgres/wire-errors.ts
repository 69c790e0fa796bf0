// Converts errors, once, into the client's own protocol: an ErrorResponse whose message starts
// with the Gatehouse code, with the SQLSTATE from the registry and the hint that says what to do.

import { GatehouseError } from "../../domain/errors.ts";
import { TargetError } from "../../agent/postgres.ts";
import { SecretResolutionError } from "../../agent/secrets.ts";
import { backend } from "./codec/index.ts";

export function errorFrame(e: GatehouseError, severity: "ERROR" | "FATAL" = "ERROR"): Buffer {
  return backend.errorResponse({ severity, code: e.def.sqlstate, message: `${e.code}: ${e.message}`, hint: e.def.hint });
}

export function noticeFrame(message: string, detail?: string, hint?: string): Buffer {
  const fields: Parameters<typeof backend.noticeResponse>[0] = { severity: "NOTICE", code: "00000", message };
  if (detail) fields.detail = detail;
  if (hint) fields.hint = hint;
  return backend.noticeResponse(fields);
}

/** Any failure → a GatehouseError for the client; internal details stay in the log. */
export function toGatehouseError(e: unknown): GatehouseError {
  if (e instanceof GatehouseError) return e;
  if (e instanceof TargetError) return new GatehouseError("PG_TARGET_UNAVAILABLE", e.message);
  // Names the reference (env:NAME), never a value.
  if (e instanceof SecretResolutionError) return new GatehouseError("PG_TARGET_UNAVAILABLE", `the agent ${e.message}`);
  return new GatehouseError("PG_TARGET_UNAVAILABLE", "internal error while opening the session (see the gateway log)");
}
