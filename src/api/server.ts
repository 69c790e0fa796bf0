// The REST API: health, readiness, metrics, OpenAPI, and one module per resource. Every error
// leaves as application/problem+json with a stable code. Bearer tokens are verified with the
// same verifier as the data path.

import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { z } from "zod";
import type { AuditLog } from "../audit/log.ts";
import type { Config } from "../config/schema.ts";
import type { Connection } from "../domain/connection.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Operation } from "../domain/operation.ts";
import type { Principal } from "../domain/principal.ts";
import type { Logger } from "../observability/logger.ts";
import type { GatewayMetrics } from "../observability/metrics.ts";
import type { PolicyEngine } from "../policy/engine.ts";
import { simulatedPrincipal } from "../policy/simulate.ts";
import type { Store } from "../store/store.ts";
import { authenticate, requireGroup, type Verifier } from "./auth.ts";
import { openApiDocument } from "./openapi.ts";
import { badRequest, problemFromError, problemOf, sendProblem } from "./problem.ts";
import { ERRORS } from "../domain/errors.ts";

export interface ApiDeps {
  config: Config;
  connections: Map<string, Connection>;
  verifier: Verifier;
  policy: PolicyEngine;
  store: Store;
  audit: AuditLog;
  metrics: GatewayMetrics;
  logger: Logger;
  version: string;
  /** Describe an operation for dry runs (classification happens in the protocol modules). */
  describe: (connection: Connection, input: { sql?: string | undefined }) => Operation;
  /** Resolved PEM certificate and key: serve HTTPS. */
  tls?: { cert: string; key: string } | undefined;
  /** Readiness checks besides the store ping: each returns why the gateway is not ready, or undefined. */
  readiness?: Array<() => string | undefined>;
  /** Extra routes registered by other modules (reviews, sessions…). */
  routes?: Array<(app: FastifyInstance, ctx: ApiContext) => void>;
}

export interface ApiContext {
  deps: ApiDeps;
  /** Verify the request's bearer token; throws a GatehouseError on failure. */
  principal(req: FastifyRequest): Promise<Principal>;
}

const policyCheckBody = z
  .object({
    connection: z.string().min(1),
    sql: z.string().max(1_000_000).optional(),
    principal: z
      .object({ subject: z.string().optional(), groups: z.array(z.string()).optional(), roles: z.array(z.string()).optional(), kind: z.enum(["human", "service"]).optional() })
      .strict()
      .optional(),
  })
  .strict();

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {});
  if (!r.success) {
    throw badRequest(r.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; "));
  }
  return r.data;
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const options = { logger: false, bodyLimit: 2 * 1024 * 1024, trustProxy: false, return503OnClosing: true } as const;
  // HTTPS when configured (the agents' tunnel then is wss://); the instance type is the same to us.
  const app = (deps.tls ? Fastify({ ...options, https: { cert: deps.tls.cert, key: deps.tls.key, minVersion: "TLSv1.2" } }) : Fastify(options)) as unknown as FastifyInstance;
  const ctx: ApiContext = { deps, principal: (req) => authenticate(req, deps.verifier, deps.audit, deps.metrics) };

  app.setErrorHandler((err, req, reply) => {
    let problem = problemFromError(err);
    const fe = err as { statusCode?: number; code?: string; message?: string };
    if (!(err instanceof GatehouseError) && typeof fe.statusCode === "number" && fe.statusCode < 500) {
      // fastify's own client errors (bad JSON, body too large, wrong content type)
      problem = problemOf(ERRORS.API_BAD_REQUEST, fe.message);
      problem.status = fe.statusCode;
    } else if (problem.status >= 500 && !(err instanceof GatehouseError)) {
      deps.logger.error({ err, path: req.url }, "api internal error");
    }
    if (problem.status === 401) reply.header("www-authenticate", 'Bearer realm="gatehouse"');
    return sendProblem(reply, problem);
  });
  app.setNotFoundHandler((req, reply) => sendProblem(reply, problemOf(ERRORS.API_NOT_FOUND, `${req.method} ${req.url}`)));
  app.addHook("onResponse", async (req, reply) => {
    deps.metrics.apiRequests.inc({ route: req.routeOptions.url ?? "unmatched", status: String(reply.statusCode) });
  });

  app.get("/healthz", async () => ({ status: "ok", version: deps.version }));
  app.get("/readyz", async (_req, reply) => {
    const ok = await deps.store.ping();
    deps.metrics.storeUp.set({}, ok ? 1 : 0);
    if (!ok) return sendProblem(reply, problemOf(ERRORS.STORE_UNAVAILABLE, `store ${deps.store.description} does not answer`));
    const failing = (deps.readiness ?? []).map((c) => c()).filter((x): x is string => x !== undefined);
    deps.metrics.storeWritable.set({}, failing.length ? 0 : 1);
    if (failing.length) return sendProblem(reply, problemOf(ERRORS.STORE_UNAVAILABLE, failing.join("; ")));
    return { status: "ready", store: deps.store.kind };
  });
  app.get("/metrics", async (_req, reply) => reply.type("text/plain; version=0.0.4").send(deps.metrics.registry.render()));
  app.get("/api/v1/openapi.json", async () => openApiDocument(deps.version));

  app.get("/api/v1/whoami", async (req) => ctx.principal(req));

  app.get("/api/v1/connections", async (req) => {
    await ctx.principal(req);
    return {
      items: [...deps.connections.values()].map((c) => ({ name: c.name, protocol: c.protocol, agent: c.agent, agents: c.agents, labels: c.labels, description: c.description ?? null, policy: c.policy })),
    };
  });

  app.post("/api/v1/policy/check", async (req) => {
    const caller = await ctx.principal(req);
    const body = parseBody(policyCheckBody, req.body);
    let principal = caller;
    if (body.principal) {
      requireGroup(caller, deps.config.api.adminGroups, "simulating another principal");
      principal = simulatedPrincipal(body.principal, deps.config.identity.groupNames);
    }
    const connection = deps.connections.get(body.connection);
    if (!connection) throw new GatehouseError("POLICY_UNKNOWN_CONNECTION", body.connection);
    const operation = deps.describe(connection, { sql: body.sql });
    const decision = deps.policy.decide({ principal, connection, operation });
    return { decision, operation, principal: { subject: principal.subject, kind: principal.kind, groups: principal.groups, roles: principal.roles } };
  });

  for (const r of deps.routes ?? []) r(app, ctx);
  return app;
}
