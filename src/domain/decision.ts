// The outcome of policy for one Operation. Every Decision names the rule that made it, so the
// caller, the reviewer and the auditor see the same reason.

export type DecisionAction = "allow" | "review" | "deny";
export type ReviewMode = "hold" | "async";

/** Restrictiveness order: a larger number wins when several rules match. */
export const ACTION_RANK: Record<DecisionAction, number> = { allow: 0, review: 1, deny: 2 };

export interface ReviewRequirement {
  approvers: string[];
  quorum: number;
  expiresSeconds: number;
  mode: ReviewMode;
  /** Notifier names to tell about the review. */
  notify: string[];
}

export interface Decision {
  action: DecisionAction;
  /** Rule name, or `default` / `unparseable` / `error` for the built-in fallbacks. */
  rule: string;
  /** Message the caller sees for deny and review. */
  message?: string;
  review?: ReviewRequirement;
  /** Index of the statement (multi-statement SQL) that drove this decision. */
  statementIndex?: number;
}
