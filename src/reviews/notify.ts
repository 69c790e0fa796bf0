// Review notifications: a generic signed webhook, Slack and Microsoft Teams incoming webhooks.
// Delivery runs in the background with a bounded queue, per-attempt timeouts and exponential
// backoff; the data path only enqueues and never waits, so a dead receiver slows nothing.
//
// Webhook signature: X-Gatehouse-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
// with X-Gatehouse-Timestamp (Unix seconds). Receivers recompute it and reject stale timestamps.

import { createHmac } from "node:crypto";
import type { NotifierConfig } from "../config/schema.ts";
import type { Review } from "../domain/review.ts";
import type { Logger } from "../observability/logger.ts";
import type { SecretResolver } from "../agent/secrets.ts";

export type ReviewEventType = "review.created" | "review.approved" | "review.denied" | "review.expired" | "review.cancelled" | "review.modified";

export interface ReviewEvent {
  type: ReviewEventType;
  review: Review;
  /** Where a reviewer opens it, when the gateway knows its public URL. */
  url?: string | undefined;
}

const MAX_QUEUE = 1000;

export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

function summary(e: ReviewEvent): { title: string; facts: Array<[string, string]> } {
  const r = e.review;
  const st = r.operation.sql?.statements ?? [];
  const what = e.type === "review.created" ? "waits for review" : e.type.replace("review.", "");
  const facts: Array<[string, string]> = [
    ["Requester", `${r.requester.displayName} (${r.requester.kind})`],
    ["Connection", r.connection],
    ["Rule", `${r.rule}${r.message ? ` — ${r.message}` : ""}`],
    ["Classification", st.map((s) => [s.kinds.join("+"), ...s.flags].join(" ")).join("; ") || (r.operation.sql?.parseError ? "unparseable" : "-")],
    ["Approvers", `${r.approvers.join(", ") || "(none)"} (quorum ${r.quorum})`],
    ["Review", r.id],
  ];
  const last = r.votes.at(-1);
  if (e.type !== "review.created" && last) facts.push(["Decided by", `${last.displayName}${last.comment ? `: ${last.comment}` : ""}`]);
  return { title: `Gatehouse: an operation on ${r.connection} ${what}`, facts };
}

function operationText(r: Review, max = 2000): string {
  const t = r.operation.text;
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

export function slackPayload(e: ReviewEvent): unknown {
  const { title, facts } = summary(e);
  const blocks: unknown[] = [
    { type: "header", text: { type: "plain_text", text: title.slice(0, 150) } },
    { type: "section", text: { type: "mrkdwn", text: `\`\`\`${operationText(e.review).replace(/```/g, "`\u200b``")}\`\`\`` } },
    { type: "section", fields: facts.map(([k, v]) => ({ type: "mrkdwn", text: `*${k}*\n${v}` })).slice(0, 10) },
  ];
  if (e.url) blocks.push({ type: "actions", elements: [{ type: "button", text: { type: "plain_text", text: "Open review" }, url: e.url }] });
  return { text: `${title}: ${operationText(e.review, 200)}`, blocks };
}

export function teamsPayload(e: ReviewEvent): unknown {
  const { title, facts } = summary(e);
  const card: Record<string, unknown> = {
    $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
    type: "AdaptiveCard",
    version: "1.4",
    body: [
      { type: "TextBlock", size: "Medium", weight: "Bolder", text: title, wrap: true },
      { type: "TextBlock", text: operationText(e.review), fontType: "Monospace", wrap: true },
      { type: "FactSet", facts: facts.map(([title, value]) => ({ title, value })) },
    ],
  };
  if (e.url) card.actions = [{ type: "Action.OpenUrl", title: "Open review", url: e.url }];
  return { type: "message", attachments: [{ contentType: "application/vnd.microsoft.card.adaptive", content: card }] };
}

export function webhookPayload(e: ReviewEvent): unknown {
  return { event: e.type, url: e.url ?? null, review: e.review };
}

interface Job {
  notifier: NotifierConfig;
  event: ReviewEvent;
  attempt: number;
}

export interface DispatcherStats {
  delivered: number;
  failed: number;
  dropped: number;
  queued: number;
}

export class NotificationDispatcher {
  readonly #notifiers: Map<string, NotifierConfig>;
  readonly #secrets: SecretResolver;
  readonly #logger: Logger;
  readonly #queue: Job[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #running = 0;
  #closed = false;
  readonly stats: DispatcherStats = { delivered: 0, failed: 0, dropped: 0, queued: 0 };
  /** First retry delay; tests shorten it. */
  baseDelayMs = 1000;

  constructor(notifiers: NotifierConfig[], secrets: SecretResolver, logger: Logger) {
    this.#notifiers = new Map(notifiers.map((n) => [n.name, n]));
    this.#secrets = secrets;
    this.#logger = logger;
  }

  /** Enqueue; returns at once. */
  notify(names: readonly string[], event: ReviewEvent): void {
    if (this.#closed) return;
    const kind = event.type === "review.created" ? "created" : "decided";
    for (const name of new Set(names)) {
      const n = this.#notifiers.get(name);
      if (!n || !n.events.includes(kind)) continue;
      if (this.#queue.length >= MAX_QUEUE) {
        this.stats.dropped++;
        this.#logger.warn({ notifier: name, review: event.review.id }, "notification queue full; notification dropped");
        continue;
      }
      this.#queue.push({ notifier: n, event, attempt: 0 });
      this.stats.queued++;
    }
    this.#pump();
  }

  #pump(): void {
    while (this.#running < 4 && this.#queue.length && !this.#closed) {
      const job = this.#queue.shift()!;
      this.#running++;
      this.#deliver(job)
        .catch((e: Error) => this.#retry(job, e))
        .finally(() => {
          this.#running--;
          this.#pump();
        });
    }
  }

  #retry(job: Job, e: Error): void {
    if (job.attempt >= job.notifier.retries || this.#closed) {
      this.stats.failed++;
      this.#logger.warn({ notifier: job.notifier.name, review: job.event.review.id, attempts: job.attempt + 1, err: e.message }, "notification failed");
      return;
    }
    const delay = this.baseDelayMs * 2 ** job.attempt * (0.8 + Math.random() * 0.4);
    const t = setTimeout(() => {
      this.#timers.delete(t);
      this.#queue.push({ ...job, attempt: job.attempt + 1 });
      this.#pump();
    }, delay);
    t.unref();
    this.#timers.add(t);
  }

  async #deliver(job: Job): Promise<void> {
    const n = job.notifier;
    const payload = n.type === "slack" ? slackPayload(job.event) : n.type === "teams" ? teamsPayload(job.event) : webhookPayload(job.event);
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "gatehouse" };
    if (n.type === "webhook") {
      const ts = Math.floor(Date.now() / 1000);
      headers["x-gatehouse-event"] = job.event.type;
      headers["x-gatehouse-timestamp"] = String(ts);
      headers["x-gatehouse-delivery"] = `${job.event.review.id}:${job.event.type}`;
      if (n.secret) headers["x-gatehouse-signature"] = signWebhook(await this.#secrets.resolve(n.secret), ts, body);
    }
    const res = await fetch(n.url, { method: "POST", headers, body, signal: AbortSignal.timeout(n.timeout * 1000) });
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    this.stats.delivered++;
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#queue.length = 0;
  }
}
