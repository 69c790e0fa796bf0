// Agents hold target credentials and dial targets. The gateway reaches every target through an
// Agent — the embedded one in the gateway process by default — so there is one data path.

import type { Duplex } from "node:stream";
import type { Connection } from "../domain/connection.ts";
import { GatehouseError } from "../domain/errors.ts";
import { cancelPostgresTarget, openPostgresTarget, type PostgresTargetSession } from "./postgres.ts";
import { SecretResolver } from "./secrets.ts";
import type { GitRefUpdate } from "../domain/operation.ts";
import { createLogger, type Logger } from "../observability/logger.ts";
import { GitMirrors } from "./git-mirror.ts";
import { HttpForwarder, type HttpForwardRequest, type HttpForwardResponse } from "./http.ts";

export interface Agent {
  readonly name: string;
  /** False while a network-resident agent has no tunnel open (embedded: always available). */
  readonly connected?: boolean;
  /** Open an authenticated session to the connection's PostgreSQL target. */
  openPostgres(connection: Connection, clientParameters: Record<string, string>): Promise<PostgresTargetSession>;
  /** Deliver a CancelRequest for a session this agent opened. */
  cancelPostgres(connection: Connection, key: { processId: number; secretKey: Buffer }): Promise<void>;
  /** Send a judged HTTP request to the connection's target, with the connection's credential. */
  httpRequest?(connection: Connection, req: HttpForwardRequest): Promise<HttpForwardResponse>;
  /** An HTTP upgrade (WebSocket): a byte stream to the target after the judged request head. */
  httpUpgrade?(connection: Connection, req: { target: string; headers: Record<string, string | string[] | undefined> }): Promise<Duplex>;
  /** git pushes: establish which ref updates are fast-forwards (sets `fastForward`). */
  gitFastForward?(connection: Connection, repoPath: string, updates: GitRefUpdate[], body: Buffer, commandsEnd: number, capabilities: string[]): Promise<void>;
  close?(): Promise<void>;
}

export class EmbeddedAgent implements Agent {
  readonly name = "embedded";
  readonly #secrets: SecretResolver;
  readonly #http: HttpForwarder;
  readonly #git: GitMirrors;
  constructor(opts: { secrets?: SecretResolver; gitMirrorDir?: string; logger?: Logger } = {}) {
    this.#secrets = opts.secrets ?? new SecretResolver();
    this.#http = new HttpForwarder(this.#secrets);
    this.#git = new GitMirrors(opts.gitMirrorDir ?? "./data/git-mirrors", this.#secrets, opts.logger ?? createLogger("silent"));
  }
  httpRequest(connection: Connection, req: HttpForwardRequest): Promise<HttpForwardResponse> {
    if (!connection.http) throw new GatehouseError("HTTP_TARGET_UNAVAILABLE", `connection ${connection.name} has no http target`);
    return this.#http.forward(connection.name, connection.http, req);
  }
  httpUpgrade(connection: Connection, req: { target: string; headers: Record<string, string | string[] | undefined> }): Promise<Duplex> {
    if (!connection.http) throw new GatehouseError("HTTP_TARGET_UNAVAILABLE", `connection ${connection.name} has no http target`);
    return this.#http.upgrade(connection.name, connection.http, req);
  }
  gitFastForward(connection: Connection, repoPath: string, updates: GitRefUpdate[], body: Buffer, commandsEnd: number, capabilities: string[]): Promise<void> {
    if (!connection.http) return Promise.resolve();
    return this.#git.classify(connection.name, connection.http, repoPath, updates, body, commandsEnd, capabilities);
  }
  close(): Promise<void> {
    return this.#http.close();
  }
  openPostgres(connection: Connection, clientParameters: Record<string, string>): Promise<PostgresTargetSession> {
    if (!connection.postgres) throw new GatehouseError("PG_TARGET_UNAVAILABLE", `connection ${connection.name} has no postgres target`);
    return openPostgresTarget(connection.postgres, this.#secrets, { clientParameters });
  }
  cancelPostgres(connection: Connection, key: { processId: number; secretKey: Buffer }): Promise<void> {
    if (!connection.postgres) return Promise.resolve();
    return cancelPostgresTarget(connection.postgres, key);
  }
}

export class AgentRegistry {
  #agents = new Map<string, Agent>();
  #rotate = 0;
  register(agent: Agent): void {
    this.#agents.set(agent.name, agent);
  }
  unregister(name: string): void {
    this.#agents.delete(name);
  }
  get(name: string): Agent | undefined {
    return this.#agents.get(name);
  }
  /** An available agent serving the connection (rotating among several), or GH-AGENT-001 naming them. */
  for(connection: Connection): Agent {
    if (connection.agents?.length === 1) {
      // One agent (nearly every connection): no lists built per request.
      const a = this.#agents.get(connection.agents[0]!);
      if (a && a.connected !== false) return a;
    }
    const names = connection.agents ?? [connection.agent];
    const available = names.map((n) => this.#agents.get(n)).filter((a): a is Agent => !!a && a.connected !== false);
    if (!available.length) {
      const msg = names.length === 1 ? `agent "${names[0]}" (serving connection ${connection.name}) is not connected` : `none of the agents ${names.map((n) => `"${n}"`).join(", ")} (serving connection ${connection.name}) is connected`;
      throw new GatehouseError("AGENT_UNAVAILABLE", msg);
    }
    this.#rotate = (this.#rotate + 1) % available.length;
    return available[this.#rotate]!;
  }
}
