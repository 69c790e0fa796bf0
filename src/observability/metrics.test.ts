// The registry's exposition format, and label sets kept by hot paths (frozen: keyed once).

import assert from "node:assert/strict";
import { test } from "node:test";
import { Counter, Histogram, labels, Registry } from "./metrics.ts";

test("a kept (frozen) label set counts into the same series as a fresh object with the same labels", () => {
  const reg = new Registry();
  const c = reg.register(new Counter("t_total", "test"));
  const kept = labels({ rule: 'a "quoted"\nrule', connection: "db" });
  c.inc(kept);
  c.inc(kept, 2);
  c.inc({ connection: "db", rule: 'a "quoted"\nrule' });
  assert.equal(c.get({ connection: "db", rule: 'a "quoted"\nrule' }), 4);
  assert.ok(Object.isFrozen(kept));
  assert.match(reg.render(), /^t_total\{connection="db",rule="a \\"quoted\\"\\nrule"\} 4$/m);
});

test("histograms key kept label sets the same way", () => {
  const reg = new Registry();
  const h = reg.register(new Histogram("t_seconds", "test", [0.1, 1]));
  const kept = labels({ connection: "db" });
  h.observe(kept, 0.05);
  h.observe({ connection: "db" }, 0.5);
  assert.equal(h.count({ connection: "db" }), 2);
  assert.match(reg.render(), /^t_seconds_bucket\{connection="db",le="0.1"\} 1$/m);
  assert.match(reg.render(), /^t_seconds_count\{connection="db"\} 2$/m);
});
