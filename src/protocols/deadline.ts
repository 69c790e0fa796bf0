// A timeout that is armed and disarmed far more often than it expires — a connection's idle or
// head timeout, a request's response-head timeout — used by the HTTP server and the agent's HTTP
// client. Arming only moves a number: one Timeout stays scheduled and, when it fires before the
// deadline, sleeps again for the rest (a setTimeout and a clearTimeout per request were a
// measurable part of a small request's cost). On the monotonic clock (a wall-clock step moves no
// deadline), each sleep capped at setTimeout's limit, and unref'd: whatever the deadline guards
// keeps the process alive by itself.

/** The longest delay setTimeout takes (2^31 − 1 ms); a longer deadline is reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Deadline {
  readonly #onExpire: () => void;
  #timer: NodeJS.Timeout | undefined;
  /** When the scheduled Timeout fires (performance.now()). */
  #timerAt = 0;
  /** When the deadline expires (performance.now()); 0 while disarmed. */
  #due = 0;

  constructor(onExpire: () => void) {
    this.#onExpire = onExpire;
  }

  /** Expire `ms` from now, replacing the deadline armed before (if any). */
  arm(ms: number): void {
    this.#due = performance.now() + ms;
    if (this.#timer && this.#timerAt <= this.#due) return;
    this.#schedule(ms);
  }

  /** Not expire (the Timeout, if scheduled, finds nothing to do). */
  disarm(): void {
    this.#due = 0;
  }

  /** Disarm and drop the Timeout: its owner is done. */
  stop(): void {
    this.#due = 0;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    const delay = Math.max(0, Math.min(ms, MAX_TIMER_MS));
    this.#timerAt = performance.now() + delay;
    this.#timer = setTimeout(this.#fire, delay);
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    if (this.#due === 0) return;
    const left = this.#due - performance.now();
    if (left > 0) {
      this.#schedule(left);
      return;
    }
    this.#due = 0;
    this.#onExpire();
  };
}
