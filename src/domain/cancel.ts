// A cancellation signal for the hot path: the part of AbortSignal the gate uses (aborted, reason,
// "abort" listeners) without its EventTarget machinery, which costs more than a small proxied
// request's whole policy decision. AbortSignal itself satisfies CancelSignal, so either may be passed.

export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

export class Cancellation implements CancelSignal {
  #aborted = false;
  #reason: unknown;
  #listeners: (() => void)[] | undefined;

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  addEventListener(_type: "abort", listener: () => void): void {
    if (this.#aborted) return;
    if (this.#listeners) this.#listeners.push(listener);
    else this.#listeners = [listener];
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const l = this.#listeners;
    if (!l) return;
    const i = l.indexOf(listener);
    if (i >= 0) l.splice(i, 1);
  }

  /** Cancel once; listeners run once, in the order they were added. */
  cancel(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    const l = this.#listeners;
    this.#listeners = undefined;
    if (l) for (const f of l) f();
  }
}
