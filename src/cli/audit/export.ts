// `gatehouse audit export --format jsonl|csv`: every matching event, oldest first, streamed from
// the API to a file or stdout. A file is written under a temporary name and renamed when complete,
// so an interrupted export never looks finished.

import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { GatehouseError } from "../../domain/errors.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action } from "../output.ts";
import { addFilterOptions, type FilterOptions, filterParams } from "./filters.ts";

export function register(audit: Command): void {
  addFilterOptions(addApiOptions(audit.command("export").description("export audit events as JSON Lines or CSV with SIEM field names (auditor groups)")))
    .option("--format <format>", "jsonl or csv", "jsonl")
    .option("--output <file>", "write to this file instead of stdout")
    .action(
      action(async (o: ApiOptions & FilterOptions & { format: string; output?: string }) => {
        if (o.format !== "jsonl" && o.format !== "csv") throw new GatehouseError("API_BAD_REQUEST", `--format must be jsonl or csv (got ${o.format})`);
        const q = filterParams(o);
        q.set("format", o.format);
        const body = () => Readable.from(new ApiClient(o).stream(`/api/v1/audit/export?${q}`));
        if (!o.output) {
          // Keep stdout open for whoever else writes to it.
          return pipeline(body(), new Writable({ write: (chunk, _enc, cb) => (process.stdout.write(chunk) ? cb() : process.stdout.once("drain", () => cb())) }));
        }
        const partial = `${o.output}.partial`;
        try {
          await pipeline(body(), createWriteStream(partial, { mode: 0o600 }));
          await rename(partial, o.output);
        } catch (e) {
          await rm(partial, { force: true });
          throw e;
        }
        process.stderr.write(`exported to ${o.output}\n`);
      }),
    );
}
