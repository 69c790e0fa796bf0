// RFC 9457 problem details for every API error, carrying the Gatehouse error code and its hint.

import type { FastifyReply } from "fastify";
import { type ErrorDef, ERRORS, GatehouseError } from "../domain/errors.ts";

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
  hint: string;
  [extra: string]: unknown;
}

export function problemOf(def: ErrorDef, detail?: string, extra: Record<string, unknown> = {}): Problem {
  const p: Problem = { type: `urn:gatehouse:error:${def.code}`, title: def.title, status: def.status, code: def.code, hint: def.hint, ...extra };
  if (detail) p.detail = detail;
  return p;
}

export function problemFromError(e: unknown): Problem {
  if (e instanceof GatehouseError) return problemOf(e.def, e.detail || undefined, e.extra);
  return { type: "about:blank", title: "Internal error", status: 500, code: "internal", hint: "This is a bug in Gatehouse; the gateway's log has the details." };
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.code(p.status).type("application/problem+json").send(p);
}

export function badRequest(detail: string, extra: Record<string, unknown> = {}): GatehouseError {
  return new GatehouseError(ERRORS.API_BAD_REQUEST, detail, extra);
}
