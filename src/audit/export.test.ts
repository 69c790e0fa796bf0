// Export rows: SIEM field names, RFC 4180 CSV quoting, and spreadsheet formula injection defused.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { AuditRecord } from "./chain.ts";
import { CSV_HEADER, csvCell, csvLine, exportChunks, jsonLine, outcomeOf, SIEM_FIELDS, siemRecord } from "./export.ts";

const row: AuditRecord = {
  seq: 12,
  id: "e-12",
  at: Date.UTC(2025, 0, 2, 3, 4, 5, 6),
  type: "operation.decided",
  principal_subject: "tid/oid",
  principal_name: "=HYPERLINK(\"http://evil\",\"x\")",
  connection: "pg-prod",
  session_id: "s-1",
  decision: "deny",
  rule: "no-drop",
  data: JSON.stringify({ text: "select 'a,b'\n\"quoted\"" }),
  prev_hash: "0".repeat(64),
  hash: "f".repeat(64),
};

test("a JSON line carries the SIEM field names, the data as an object, and round-trips", () => {
  const r = JSON.parse(jsonLine(row));
  assert.deepEqual(Object.keys(r), [...SIEM_FIELDS]);
  assert.equal(r["@timestamp"], "2025-01-02T03:04:05.006Z");
  assert.equal(r["event.sequence"], 12);
  assert.equal(r["event.action"], "operation.decided");
  assert.equal(r["event.outcome"], "failure");
  assert.equal(r["user.id"], "tid/oid");
  assert.equal(r["rule.name"], "no-drop");
  assert.deepEqual(r["gatehouse.data"], { text: "select 'a,b'\n\"quoted\"" });
  assert.equal(r["user.name"], row.principal_name, "JSON Lines is exact: no formula escaping");
});

test("event.outcome from the decision; auth failures are failures", () => {
  assert.equal(outcomeOf({ type: "operation.decided", decision: "allow" }), "success");
  assert.equal(outcomeOf({ type: "review.created", decision: "review" }), "unknown");
  assert.equal(outcomeOf({ type: "auth.failed", decision: null }), "failure");
  assert.equal(outcomeOf({ type: "session.started", decision: null }), null);
});

test("CSV cells: RFC 4180 quoting; formulas get a leading apostrophe; numbers stay numbers", () => {
  assert.equal(csvCell("plain"), "plain");
  assert.equal(csvCell('say "hi", then\r\nleave'), '"say ""hi"", then\r\nleave"');
  for (const f of ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"]) assert.ok(csvCell(f).replace(/^"/, "").startsWith("'"), f);
  assert.equal(csvCell('=cmd|"/c calc"!A0'), `"'=cmd|""/c calc""!A0"`);
  assert.equal(csvCell(-5), "-5");
  assert.equal(csvCell(null), "");
  assert.equal(csvCell({ a: 1 }), '"{""a"":1}"');
});

test("a CSV row has one cell per header field and ends with CRLF", async () => {
  const line = csvLine(row);
  assert.ok(line.endsWith("\r\n"));
  assert.ok(line.includes(`"'=HYPERLINK(""http://evil"",""x"")"`));
  // A minimal RFC 4180 reader splits it back into as many fields as the header has.
  const fields: string[] = [];
  let cur = "";
  let quoted = false;
  const body = line.slice(0, -2);
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (quoted && ch === '"' && body[i + 1] === '"') {
      cur += '"';
      i++;
    } else if (ch === '"') quoted = !quoted;
    else if (ch === "," && !quoted) {
      fields.push(cur);
      cur = "";
    } else cur += ch;
  }
  fields.push(cur);
  assert.equal(fields.length, SIEM_FIELDS.length);
  assert.deepEqual(JSON.parse(fields[SIEM_FIELDS.indexOf("gatehouse.data")]!), { text: "select 'a,b'\n\"quoted\"" });
  assert.equal(siemRecord(row)["gatehouse.connection"], fields[SIEM_FIELDS.indexOf("gatehouse.connection")]);

  async function* pages() {
    yield [row];
    yield [{ ...row, seq: 13 }];
  }
  let csv = "";
  for await (const c of exportChunks(pages(), "csv")) csv += c;
  assert.ok(csv.startsWith(CSV_HEADER));
  assert.equal(csv.split("\r\n").filter((l) => l.startsWith("2025-")).length, 2);
});
