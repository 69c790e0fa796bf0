// Who is calling. Built only by src/identity from a verified token (or by the dev issuer);
// everything downstream trusts these fields, so nothing else may construct one from input.

export type PrincipalKind = "human" | "service";

export interface Principal {
  /** Stable key: `${tenantId}/${objectId}` for Entra tokens, else `${issuer}#${sub}`. */
  subject: string;
  /** Entra `oid` (object id of the user or service principal), when present. */
  objectId?: string;
  /** Entra `tid`, when present. */
  tenantId?: string;
  issuer: string;
  /** Human-readable: `name`, `preferred_username`, `upn`, `app_displayname`, else the subject. */
  displayName: string;
  kind: PrincipalKind;
  /** Group ids from the token plus the names they map to in config. */
  groups: string[];
  /**
   * Set when the token had a group overage and config said `groupOverage: no-groups`: `groups`
   * is then empty because it is unknown, not because the caller is in no group. Audited.
   */
  groupsOverage?: boolean;
  /** App roles (`roles` claim). */
  roles: string[];
  /** Delegated scopes (`scp`, space separated in the token). */
  scopes: string[];
  /** Calling application: `azp` (v2) / `appid` (v1). */
  clientId?: string;
  /** Entra token version, `1.0` or `2.0`, when the token says. */
  tokenVersion?: string;
  /** Token id (`uti` / `jti`) for the audit trail; never the token itself. */
  tokenId?: string;
  /** Unix seconds. */
  expiresAt: number;
}
