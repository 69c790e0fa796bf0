// `gatehouse sessions export ID --format jsonl|asciicast [--output FILE]`: the recording as
// JSON Lines (every frame, bytes in base64, with events) or as an asciicast v2 terminal playback.

import { createWriteStream } from "node:fs";
import { once } from "node:events";
import type { Command } from "commander";
import { GatehouseError } from "../../domain/errors.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action } from "../output.ts";

export function register(sessions: Command): void {
  addApiOptions(sessions.command("export").argument("<id>", "session id").description("export a recording as JSON Lines or asciicast v2"))
    .option("--format <format>", "jsonl or asciicast", "jsonl")
    .option("--output <file>", "write to this file instead of stdout")
    .action(
      action(async (id: string, o: ApiOptions & { format: string; output?: string }) => {
        if (o.format !== "jsonl" && o.format !== "asciicast") throw new GatehouseError("API_BAD_REQUEST", `--format must be jsonl or asciicast, not "${o.format}"`);
        const out = o.output ? createWriteStream(o.output, { mode: 0o600 }) : process.stdout;
        for await (const chunk of new ApiClient(o).stream(`/api/v1/sessions/${encodeURIComponent(id)}/export?format=${o.format}`)) {
          if (!out.write(chunk)) await once(out, "drain");
        }
        if (o.output) {
          (out as ReturnType<typeof createWriteStream>).end();
          await once(out, "finish");
        }
      }),
    );
}
