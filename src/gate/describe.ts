// Turns what a client asked for into an Operation, the one shape policy judges. Each protocol
// brings its own classifier; this is the single switch over protocols.

import type { Connection } from "../domain/connection.ts";
import type { Operation } from "../domain/operation.ts";
import { classifySql } from "../protocols/postgres/classify/index.ts";

export interface OperationInput {
  sql?: string | undefined;
  parameters?: (string | null)[] | undefined;
}

export function describeOperation(connection: Connection, input: OperationInput): Operation {
  switch (connection.protocol) {
    case "postgres": {
      const text = input.sql ?? "";
      const op: Operation = { protocol: "postgres", text, sql: classifySql(text) };
      if (input.parameters) op.parameters = input.parameters;
      return op;
    }
    default:
      throw new Error(`no classifier for protocol ${connection.protocol as string}`);
  }
}
