// A Principal for dry runs (`gatehouse policy check`, POST /api/v1/policy/check by an admin).
// Never used on the data path: there a Principal only comes from a verified token.

import type { Principal, PrincipalKind } from "../domain/principal.ts";

export interface SimulatedIdentity {
  subject?: string | undefined;
  groups?: string[] | undefined;
  roles?: string[] | undefined;
  kind?: PrincipalKind | undefined;
}

export function simulatedPrincipal(s: SimulatedIdentity, groupNames: Record<string, string> = {}): Principal {
  const groups = new Set<string>();
  for (const g of s.groups ?? []) {
    groups.add(g);
    const mapped = groupNames[g];
    if (mapped) groups.add(mapped);
  }
  const subject = s.subject ?? "simulated";
  return { subject, objectId: subject, issuer: "urn:gatehouse:simulated", displayName: `simulated ${subject}`, kind: s.kind ?? "service", groups: [...groups], roles: s.roles ?? [], scopes: [], expiresAt: 0 };
}
