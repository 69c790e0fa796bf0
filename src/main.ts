// Composition root: builds the gateway from a validated Config and nothing else. No logic lives
// here — each piece is constructed, wired, started, and stopped in reverse order.

import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { createSecureContext } from "node:tls";
import type { FastifyInstance } from "fastify";
import { AgentRegistry, EmbeddedAgent } from "./agent/agent.ts";
import { reviewRoutes } from "./api/reviews.ts";
import { sessionRoutes } from "./api/sessions.ts";
import { agentRoutes } from "./api/agents.ts";
import { AgentDirectory } from "./tunnel/directory.ts";
import { TunnelServer } from "./tunnel/server.ts";
import { buildApi } from "./api/server.ts";
import { AuditLog } from "./audit/log.ts";
import { auditRoutes } from "./api/audit.ts";
import { Checkpointer } from "./audit/checkpoints.ts";
import { recordConfigLoaded } from "./audit/config-events.ts";
import { connectionsOf } from "./config/connections.ts";
import type { Config } from "./config/schema.ts";
import { configWarnings } from "./config/warnings.ts";
import { GatehouseError } from "./domain/errors.ts";
import { describeOperation } from "./gate/describe.ts";
import { Gate } from "./gate/gate.ts";
import { SessionLog } from "./gate/sessions.ts";
import { TokenVerifier } from "./identity/index.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { createGatewayMetrics } from "./observability/metrics.ts";
import { PolicyEngine } from "./policy/engine.ts";
import { initClassifier } from "./protocols/postgres/classify/index.ts";
import { PostgresListener } from "./protocols/postgres/engine.ts";
import { HttpListener } from "./protocols/http/engine.ts";
import { listenerSecureContext } from "./protocols/postgres/tls.ts";
import { SecretResolver } from "./agent/secrets.ts";
import { GatewayRegistry } from "./gate/gateways.ts";
import { NotificationDispatcher } from "./reviews/notify.ts";
import { linkReviewsAcrossReplicas } from "./reviews/pg-notify.ts";
import { ReviewService } from "./reviews/service.ts";
import { listenError } from "./protocols/listen.ts";
import { RecordingService } from "./recording/recorder.ts";
import { scheduleRetention } from "./retention/run.ts";
import { openStore, type Store } from "./store/store.ts";
import { VERSION } from "./version.ts";

export interface GatewayOptions {
  logger?: Logger;
  gatewayId?: string;
}

export interface Gateway {
  id: string;
  apiUrl: string;
  api: FastifyInstance;
  /** Address of the PostgreSQL listener, when enabled. */
  postgres?: AddressInfo;
  /** Address of the HTTP listener, when enabled and an http connection exists. */
  http?: AddressInfo;
  reviews: ReviewService;
  notifier: NotificationDispatcher;
  store: Store;
  audit: AuditLog;
  recordings: RecordingService;
  close(): Promise<void>;
}

async function resolveApiTls(t: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  const secrets = new SecretResolver();
  const pair = { cert: await secrets.resolve(t.cert), key: await secrets.resolve(t.key) };
  try {
    createSecureContext({ ...pair, minVersion: "TLSv1.2" });
  } catch (e) {
    throw new GatehouseError("CONFIG_INVALID", `tls: the certificate or key is not usable PEM (${(e as Error).message})`);
  }
  return pair;
}

export async function startGateway(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  const logger = opts.logger ?? createLogger(config.logging.level);
  const id = opts.gatewayId ?? randomUUID();
  const metrics = createGatewayMetrics();
  for (const w of configWarnings(config)) logger.warn({ warning: w }, "configuration warning");
  const verifier = new TokenVerifier(config.identity);
  await initClassifier();
  const store = await openStore(config.store.url, { poolSize: config.store.poolSize });
  // On a SQLite file store audit events are made durable in the audit journal and linked into
  // the store by the writer thread: no database transaction in the forwarding event loop.
  const audit = new AuditLog(store, {
    journal: true,
    onThreadError: (e) => logger.error({ err: e.message }, "audit writer thread failed; the event loop ingests the audit journal itself"),
    onWarning: (m) => logger.warn(m),
  });
  // A journal left by a previous run (a crash) is ingested before anything else happens.
  await audit.drain();
  audit.onCommitted = (records) => {
    // Counted per type per batch: one series lookup each, not one per event.
    let type = records[0]?.type;
    let n = 0;
    for (const r of records) {
      if (r.type !== type) {
        metrics.auditEvents.inc({ type: type! }, n);
        type = r.type;
        n = 0;
      }
      n++;
    }
    if (n) metrics.auditEvents.inc({ type: type! }, n);
  };
  const connections = connectionsOf(config);
  const policy = new PolicyEngine(config.policies);
  const reviews = new ReviewService(store, audit, {
    breakGlassGroups: config.reviews.breakGlassGroups,
    recheck: (requester, connectionName, text) => {
      const connection = connections.get(connectionName);
      if (!connection) throw new GatehouseError("POLICY_UNKNOWN_CONNECTION", connectionName);
      const operation = describeOperation(connection, { sql: text });
      return { operation, decision: policy.decide({ principal: requester, connection, operation }) };
    },
  });
  const gate = new Gate({ policy, audit, reviews, metrics, logger, publicUrl: config.api.publicUrl });
  const notifier = new NotificationDispatcher(config.notifiers, new SecretResolver(), logger);
  reviews.subscribe((e) => notifier.notify(e.review.notify, { ...e, url: gate.reviewUrl(e.review.id) }));
  const gateways = new GatewayRegistry(store, audit, id, VERSION);
  const recordings = new RecordingService({ store, config: config.recording, logger, metrics, offload: (batch, compress) => audit.writeChunksOffThread(batch, compress) });
  const sessions = new SessionLog(store, audit, metrics, id, recordings);
  const agents = new AgentRegistry();
  const embedded = new EmbeddedAgent({ gitMirrorDir: config.listeners.http.gitMirrorDir, logger });
  agents.register(embedded);
  const agentDirectory = new AgentDirectory(store);
  const tunnels = new TunnelServer({ directory: agentDirectory, verifier, tokenAgents: new Map(config.agents.flatMap((a) => a.clientIds.map((id) => [id, a.name] as const))), registry: agents, connections, audit, metrics, logger });

  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((e) => logger.error({ err: (e as Error).message }, "error while stopping"));
  };
  try {
    const { interruptedSessions } = await gateways.start();
    stops.push(() => gateways.stop());
    stops.push(() => recordings.close());
    stops.push(scheduleRetention({ store, sink: recordings.sink, audit, config, logger }, config.retention.interval));
    const recovered = await reviews.recover();
    if (interruptedSessions.length || recovered.cancelled) logger.warn({ interruptedSessions: interruptedSessions.length, cancelledReviews: recovered.cancelled }, "recovered from an earlier gateway that stopped without closing its sessions");
    if (store.kind === "postgres") {
      const link = await linkReviewsAcrossReplicas(config.store.url, reviews, logger);
      stops.push(() => link.close());
    }
    const checkpointer = await Checkpointer.fromConfig(store, config.audit, { gatewayId: id, logger });
    const apiTls = config.api.tls ? await resolveApiTls(config.api.tls) : undefined;
    const api = await buildApi({ tls: apiTls, config, connections, verifier, policy, store, audit, metrics, logger, version: VERSION, describe: describeOperation, readiness: [() => (audit.writeError ? `the last audit write failed: ${audit.writeError}` : undefined), () => (recordings.healthy ? undefined : `the last recording write failed: ${recordings.lastError}`)], routes: [reviewRoutes(reviews), agentRoutes({ tunnels, directory: agentDirectory, audit, adminGroups: config.api.adminGroups }), auditRoutes({ checkpointer }), sessionRoutes({ store, audit, sink: recordings.sink, auditorGroups: config.audit.auditorGroups })] });
    await api.listen({ host: config.api.host, port: config.api.port }).catch((e: unknown) => {
      throw listenError(e, "api", config.api.host, config.api.port);
    });
    stops.push(() => api.close());
    // Agents dial in on the API listener; their tunnels close after the sessions using them.
    tunnels.attach(api.server);
    stops.push(() => tunnels.close());
    const addr = api.server.address();
    const port = typeof addr === "object" && addr ? addr.port : config.api.port;
    const apiUrl = `${apiTls ? "https" : "http"}://${config.api.host.includes(":") ? `[${config.api.host}]` : config.api.host}:${port}`;

    let postgres: AddressInfo | undefined;
    const pgCfg = config.listeners.postgres;
    if (pgCfg.enabled) {
      const secureContext = await listenerSecureContext(pgCfg.tls);
      const listener = new PostgresListener({ config: pgCfg, secureContext, connections, verifier, gate, agents, sessions, audit, metrics, logger });
      postgres = await listener.listen();
      stops.push(() => listener.close());
    }
    stops.push(() => embedded.close());
    let http: AddressInfo | undefined;
    const httpCfg = config.listeners.http;
    if (httpCfg.enabled && [...connections.values()].some((c) => c.protocol === "http")) {
      const listener = new HttpListener({ tls: httpCfg.tls ? await resolveApiTls(httpCfg.tls) : undefined, config: httpCfg, connections, verifier, gate, agents, sessions, audit, metrics, logger });
      http = await listener.listen();
      stops.push(() => listener.close());
    }
    await audit.append({ type: "gateway.started", data: { gatewayId: id, version: VERSION, store: store.kind, connections: [...connections.keys()], rules: config.policies.length } });
    await recordConfigLoaded(store, audit, config, id);
    // Started: what the start recorded (config.loaded/changed, gateway.started) is in the store.
    await audit.drain();
    checkpointer.start();
    logger.info({ gatewayId: id, api: apiUrl, postgres: postgres ? `${postgres.address}:${postgres.port}` : null, http: http ? `${http.address}:${http.port}` : null, store: store.description, version: VERSION }, "gateway started");

    let closed = false;
    const gw: Gateway = {
      id,
      apiUrl,
      api,
      reviews,
      notifier,
      store,
      audit,
      recordings,
      async close() {
        if (closed) return;
        closed = true;
        logger.info({ gatewayId: id }, "gateway stopping");
        await stopAll();
        reviews.close();
        notifier.close();
        await audit.append({ type: "gateway.stopped", data: { gatewayId: id } }).catch(() => {});
        await audit.drain();
        await checkpointer.stop().catch((e) => logger.error({ err: (e as Error).message }, "final audit checkpoint failed"));
        await audit.close();
        verifier.close?.();
        await store.close();
      },
    };
    if (postgres) gw.postgres = postgres;
    if (http) gw.http = http;
    return gw;
  } catch (e) {
    await stopAll();
    reviews.close();
    notifier.close();
    await audit.close().catch(() => {});
    await store.close();
    throw e;
  }
}
