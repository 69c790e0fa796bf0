// How a review reads in a terminal: an HTTP request shows its body (bound by hash) and the fields
// bound with it, not a "$1 = <hash>" parameter.

import assert from "node:assert/strict";
import { test } from "node:test";
import { type ReviewJson, reviewDetail } from "./view.ts";

const base: ReviewJson = {
  id: "r1",
  status: "pending",
  createdAt: new Date().toISOString(),
  expiresAt: new Date(Date.now() + 60_000).toISOString(),
  decidedAt: null,
  connection: "ci",
  requester: { subject: "t/agent", displayName: "agent", kind: "service" },
  operation: { text: "POST /deploy" },
  rule: "deploys",
  message: null,
  approvers: ["ops"],
  quorum: 1,
  mode: "hold",
  votes: [],
};

test("an HTTP review shows the body a reviewer approves, and what is bound with it", () => {
  const out = reviewDetail({ ...base, operation: { text: "POST /deploy", parameters: ["ab12", "content-type: application/json"], http: { bodyBytes: 28, bodySha256: "ab12", bodyText: '{"service":"web",\n"v":"1.2"}' } } });
  assert.match(out, /Operation:\n {2}POST \/deploy\nBody: 28 bytes, sha256 ab12\n {2}content-type: application\/json\n {2}\| \{"service":"web",\n {2}\| "v":"1\.2"\}/);
  assert.doesNotMatch(out, /\$1 =/);
  assert.match(reviewDetail({ ...base, operation: { text: "POST /upload", parameters: ["streamed"], http: { bodyBytes: -1, bodySha256: "", bodyStreamed: true } } }), /Body: streamed, not read/);
  // SQL keeps its parameters.
  assert.match(reviewDetail({ ...base, operation: { text: "DELETE FROM t WHERE id = $1", parameters: ["7"] } }), /Parameters:\n {2}\$1 = "7"/);
});
