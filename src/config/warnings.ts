// Valid configurations that will probably not do what their author wants. `config check` prints
// these and the gateway logs them at start; none of them stops anything.

import type { Config } from "./schema.ts";

export function configWarnings(cfg: Config): string[] {
  const out: string[] = [];
  for (const [i, c] of cfg.connections.entries()) {
    const reviewRules = cfg.policies.filter((r) => r.decision === "review" && !r.review?.approvers?.length);
    if (!c.policy.approvers.length && (c.policy.unparseable === "review" || c.policy.default === "review" || reviewRules.length)) {
      out.push(`connections[${i}] (${c.name}): reviews can be opened (${[c.policy.unparseable === "review" ? "unparseable statements" : "", ...reviewRules.map((r) => `rule ${r.name}`)].filter(Boolean).join(", ") || "default decision"}) but no approver group is set (policy.approvers); nobody could approve them`);
    }
    if (c.postgres?.password && !/^(env|file):/.test(c.postgres.password)) out.push(`connections[${i}].postgres.password is a literal; use env:NAME or file:/path so the secret is not in the file`);
  }
  if (cfg.identity.devIssuer.enabled) out.push("identity.devIssuer.enabled: anyone who can read the key file can mint tokens; never in production");
  if (!cfg.identity.issuers.length && !cfg.identity.devIssuer.enabled) out.push("identity.issuers is empty: no token can be verified, so nobody can connect");
  for (const [i, r] of cfg.policies.entries()) {
    if (r.decision === "allow" && !r.principals) out.push(`policies[${i}] (${r.name}) allows for every principal; add principals: to limit it`);
  }
  return out;
}
