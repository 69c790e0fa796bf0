// A Review: the approval ticket for one held Operation.

import type { Operation } from "./operation.ts";
import type { ReviewMode } from "./decision.ts";

export type ReviewStatus = "pending" | "approved" | "denied" | "expired" | "cancelled";

export interface ReviewVote {
  /** `modify`: the reviewer replaced the operation (and approves the replacement). */
  verdict: "approve" | "deny" | "modify";
  subject: string;
  displayName: string;
  /** The approver group that entitled this person (or `break-glass`). */
  via: string;
  comment?: string;
  at: number;
}

export interface Review {
  id: string;
  status: ReviewStatus;
  createdAt: number;
  expiresAt: number;
  decidedAt: number | null;
  sessionId: string | null;
  connection: string;
  requester: { subject: string; displayName: string; kind: string; groups: string[] };
  operation: Operation;
  /** SHA-256 over connection, principal, operation text and parameters: what an approval covers. */
  bindingHash: string;
  rule: string;
  message: string | null;
  approvers: string[];
  quorum: number;
  mode: ReviewMode;
  votes: ReviewVote[];
  /** Set when an approved review has been spent by running its operation. */
  usedAt: number | null;
  /** Notifier names told about this review. */
  notify: string[];
  /** The reviewer's replacement, which runs instead of `operation` once approved. */
  modified: Operation | null;
}
