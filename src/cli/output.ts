// How every command reports: user errors (bad config, bad token, denied) print their code, what
// happened and what to do, and exit 2; anything else is a bug and exits 1 with its stack.

import { GatehouseError } from "../domain/errors.ts";

export const EXIT_USER_ERROR = 2;

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export function reportError(e: unknown): number {
  if (e instanceof GatehouseError) {
    process.stderr.write(`error ${e.code}: ${e.message}\n  ${e.def.hint}\n`);
    return EXIT_USER_ERROR;
  }
  process.stderr.write(`internal error (a bug in Gatehouse): ${(e as Error)?.stack ?? String(e)}\n`);
  return 1;
}

/** Wrap a command action so errors are reported uniformly. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      process.exitCode = reportError(e);
    }
  };
}
