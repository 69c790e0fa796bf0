// The listener's session limit: past listeners.postgres.maxSessions a connection is refused with
// SQLSTATE 53300 before anything is read, and a freed slot is usable again at once.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { connectGateway, waitFor } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

let t: TestGateway;
before(async () => {
  t = await startTestGateway({
    extraConfig: (c) => {
      c.listeners!.postgres!.maxSessions = 2;
    },
  });
});
after(async () => {
  await t?.close();
});

test("a third session is refused with 53300 and GH-PG-008; a freed slot works again", async () => {
  const token = await t.agentToken();
  const a = await connectGateway(t, token);
  const b = await connectGateway(t, token);
  const refused = (await connectGateway(t, token).catch((e) => e)) as Error & { code?: string };
  assert.equal(refused.code, "53300");
  assert.match(refused.message, /GH-PG-008/);
  await a.end();
  let c: pg.Client | undefined;
  await waitFor(async () => {
    c = await connectGateway(t, token).catch(() => undefined);
    return c;
  }, "a slot to free up", 3000, 50);
  assert.equal((await c!.query("select 1 as ok")).rows[0].ok, 1);
  await b.end();
  await c!.end();
});
