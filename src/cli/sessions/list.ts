// `gatehouse sessions list`: sessions, newest first, with filters; --all follows the pages.

import type { Command } from "commander";
import type { SessionView } from "../../recording/read.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { sessionFilters, sessionsTable } from "./view.ts";

interface ListOptions extends ApiOptions {
  principal?: string;
  connection?: string;
  from?: string;
  to?: string;
  status?: string;
  decision?: string;
  limit: string;
  all?: boolean;
  json?: boolean;
}

export function register(sessions: Command): void {
  addApiOptions(sessions.command("list").description("list sessions, newest first (needs an auditor group)"))
    .option("--principal <subject-or-name>", "only this principal (exact subject, or part of the display name)")
    .option("--connection <name>", "only this connection")
    .option("--from <time>", "started at or after (ISO 8601 or Unix ms)")
    .option("--to <time>", "started before (ISO 8601 or Unix ms)")
    .option("--status <status>", "active, closed or interrupted")
    .option("--decision <decision>", "only sessions with an operation that got this decision: allow, deny or review")
    .option("--limit <n>", "page size", "50")
    .option("--all", "follow every page")
    .option("--json", "print JSON")
    .action(
      action(async (o: ListOptions) => {
        const api = new ApiClient(o);
        const q = sessionFilters(o);
        q.set("limit", o.limit);
        const items: SessionView[] = [];
        for (;;) {
          const page = await api.request<{ items: SessionView[]; next: string | null }>("GET", `/api/v1/sessions?${q}`);
          items.push(...page.items);
          if (!o.all || !page.next) break;
          q.set("cursor", page.next);
        }
        if (o.json) printJson(items);
        else process.stdout.write(`${sessionsTable(items)}\n`);
      }),
    );
}
