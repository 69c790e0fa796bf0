// A named target and how to reach it. The gateway only knows references to credentials
// (`env:NAME`, `file:/path`); the agent that serves the connection resolves them.

import type { DecisionAction, ReviewMode } from "./decision.ts";

export type Protocol = "postgres" | "http" | "ssh";

export interface ConnectionPolicyDefaults {
  /** Decision when no rule matches. */
  default: DecisionAction;
  /** Decision for input the classifier cannot parse; never `allow`. */
  unparseable: Exclude<DecisionAction, "allow">;
  /** How a client waits for a review. */
  reviewMode: ReviewMode;
  /** Default approver groups and expiry for review decisions that name none. */
  approvers: string[];
  reviewExpiresSeconds: number;
  /** Notifier names for reviews whose rule names none. */
  notify: string[];
}

export interface PostgresTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  /** Credential reference, resolved by the agent only. */
  password?: string;
  tls: "disable" | "prefer" | "require" | "verify-full";
  /** CA bundle reference for verify-full. */
  ca?: string;
}

export interface HttpTarget {
  url: string;
  /** The credential the agent injects (a reference it resolves). */
  auth?: { type: "bearer" | "basic" | "header"; secret: string; username?: string; header?: string };
  hosts: string[];
  ca?: string;
  /** Seconds to wait for the target's response headers. */
  timeout: number;
  git: boolean;
}

export interface Connection {
  name: string;
  protocol: Protocol;
  /** Agent serving this connection (the first of `agents`); `embedded` is the in-process agent. */
  agent: string;
  /** Every agent that may serve it (availability); sessions go to any connected one. */
  agents: string[];
  labels: Record<string, string>;
  description?: string;
  postgres?: PostgresTarget;
  http?: HttpTarget;
  policy: ConnectionPolicyDefaults;
  /** What happens when the session's recording cannot be written (default strict). */
  recording?: { onFailure: "strict" | "best-effort" };
}
