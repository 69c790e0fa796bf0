import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Deadline } from "./deadline.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Deadline", () => {
  test("expires once, at its time; re-arming moves it, later or earlier", async () => {
    const fired: number[] = [];
    const t0 = performance.now();
    const d = new Deadline(() => fired.push(performance.now() - t0));
    const until = async (n: number) => {
      for (let i = 0; fired.length < n && i < 400; i++) await sleep(10);
    };
    d.arm(400);
    await sleep(200);
    d.arm(400); // moved later (to ~600 ms): the first sleep ends early and sleeps again
    await sleep(250);
    assert.deepEqual(fired, [], "not at the first deadline");
    await until(1);
    assert.equal(fired.length, 1);
    assert.ok(fired[0]! >= 590, `expired after ${fired[0]} ms`);
    const t1 = performance.now();
    d.arm(60_000);
    d.arm(20); // moved earlier than the scheduled sleep: rescheduled
    await until(2);
    assert.equal(fired.length, 2);
    assert.ok(performance.now() - t1 < 3000);
    d.stop();
  });

  test("disarmed or stopped, it does not expire", async () => {
    let fired = 0;
    const d = new Deadline(() => fired++);
    d.arm(20);
    d.disarm();
    await sleep(50);
    d.arm(20);
    d.stop();
    await sleep(50);
    assert.equal(fired, 0);
  });

  test("a deadline beyond setTimeout's limit sleeps in steps, without overflow warnings", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      let fired = 0;
      const d = new Deadline(() => fired++);
      d.arm(30 * 86_400_000);
      await sleep(30);
      d.stop();
      await new Promise((r) => setImmediate(r));
      assert.equal(fired, 0);
      assert.deepEqual(warnings, []);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
