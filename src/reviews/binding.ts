// What an approval covers: exactly one connection, one principal, one operation text and its
// parameter values. Any difference — one byte of SQL, one parameter, another caller — is a
// different hash and needs its own review.

import { createHash } from "node:crypto";
import type { Operation } from "../domain/operation.ts";

export function bindingHash(connection: string, principalSubject: string, op: Pick<Operation, "protocol" | "text" | "parameters">): string {
  const h = createHash("sha256");
  // Length-prefixed fields: no concatenation of two fields can equal another split of them.
  const field = (s: string) => {
    const b = Buffer.from(s, "utf8");
    h.update(`${b.length}:`).update(b).update(";");
  };
  field("gatehouse-binding-v1");
  field(connection);
  field(principalSubject);
  field(op.protocol);
  field(op.text);
  const params = op.parameters ?? [];
  field(String(params.length));
  for (const p of params) field(p === null ? "\u0000null" : `v${p}`);
  return h.digest("hex");
}
