// Composition root: builds the gateway from a validated Config and nothing else. No logic lives
// here — each piece is constructed, wired, started, and stopped in reverse order.

import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { buildApi } from "./api/server.ts";
import { AuditLog } from "./audit/log.ts";
import { connectionsOf } from "./config/connections.ts";
import type { Config } from "./config/schema.ts";
import { describeOperation } from "./gate/describe.ts";
import { TokenVerifier } from "./identity/index.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { createGatewayMetrics } from "./observability/metrics.ts";
import { PolicyEngine } from "./policy/engine.ts";
import { openStore } from "./store/store.ts";
import { VERSION } from "./version.ts";

export interface GatewayOptions {
  logger?: Logger;
  gatewayId?: string;
}

export interface Gateway {
  id: string;
  apiUrl: string;
  api: FastifyInstance;
  close(): Promise<void>;
}

export async function startGateway(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  const logger = opts.logger ?? createLogger(config.logging.level);
  const id = opts.gatewayId ?? randomUUID();
  const metrics = createGatewayMetrics();
  const verifier = new TokenVerifier(config.identity);
  const store = await openStore(config.store.url, { poolSize: config.store.poolSize });
  const audit = new AuditLog(store);
  audit.onCommitted = (records) => {
    for (const r of records) metrics.auditEvents.inc({ type: r.type });
  };
  const connections = connectionsOf(config);
  const policy = new PolicyEngine(config.policies);

  const api = await buildApi({ config, connections, verifier, policy, store, audit, metrics, logger, version: VERSION, describe: describeOperation });
  await api.listen({ host: config.api.host, port: config.api.port });
  const addr = api.server.address();
  const port = typeof addr === "object" && addr ? addr.port : config.api.port;
  const apiUrl = `http://${config.api.host.includes(":") ? `[${config.api.host}]` : config.api.host}:${port}`;
  await audit.append({ type: "gateway.started", data: { gatewayId: id, version: VERSION, store: store.kind, connections: [...connections.keys()], rules: config.policies.length } });
  logger.info({ gatewayId: id, api: apiUrl, store: store.description, version: VERSION }, "gateway started");

  let closed = false;
  return {
    id,
    apiUrl,
    api,
    async close() {
      if (closed) return;
      closed = true;
      logger.info({ gatewayId: id }, "gateway stopping");
      await api.close();
      await audit.append({ type: "gateway.stopped", data: { gatewayId: id } }).catch(() => {});
      await audit.drain();
      verifier.close?.();
      await store.close();
    },
  };
}
