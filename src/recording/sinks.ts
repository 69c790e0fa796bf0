// Where recording chunks are kept: in the store (a row per chunk), or in a directory (one
// append-only file per session). Both write a batch of chunks at once and read a session's chunks
// back in order; a chunk is either wholly there or not at all, so a recording of a session that
// was in flight when the gateway died reads cleanly up to its last flush.
//
// Directory files: the header line `gatehouse-recording 1 <session id>\n`, then per chunk
// u32 length, u32 seq, u32 CRC-32 of the data, data. A torn last record (the process died while
// appending) ends the recording; a bad CRC elsewhere is reported as damage.

import { createReadStream } from "node:fs";
import { appendFile, mkdir, open, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { crc32 } from "node:zlib";
import { GatehouseError } from "../domain/errors.ts";
import { isBusy, type Store } from "../store/store.ts";
import { compressChunkAsync, READABLE_VERSIONS, RECORDING_FORMAT, RECORDING_VERSION } from "./format.ts";

export interface ChunkWrite {
  sessionId: string;
  seq: number;
  at: number;
  data: Buffer;
  /**
   * `data` is the only view of its memory and nothing reads it after the write: a sink may move
   * it to another thread instead of copying it (it is empty here afterwards).
   */
  owned?: boolean;
}

export interface StoredChunk {
  seq: number;
  data: Buffer;
}

export interface RecordingSink {
  readonly kind: "store" | "directory";
  write(batch: ChunkWrite[]): Promise<void>;
  read(sessionId: string): AsyncIterable<StoredChunk>;
  /** Remove the chunks of these sessions; returns bytes freed (approximate for the store). */
  remove(sessionIds: string[]): Promise<number>;
  /** The session's recording is complete. */
  forget?(sessionId: string): void;
}

/**
 * Writes chunk batches somewhere other than the event loop (the audit writer thread), if it can;
 * `compress`: store each as compressChunk makes it (done there too).
 */
export type ChunkOffload = (batch: ChunkWrite[], compress: boolean) => Promise<void> | undefined;

export type Compression = "brotli" | "none";

/** Compressions in flight at once: libuv's pool (4 threads) also serves DNS and file I/O. */
const COMPRESS_CONCURRENCY = 2;

/** The batch as stored: compressed on libuv's pool (off the event loop), or as it is. */
async function stored(batch: ChunkWrite[], compression: Compression): Promise<ChunkWrite[]> {
  if (compression === "none") return batch;
  const out = new Array<ChunkWrite>(batch.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < batch.length; i = next++) {
      const c = batch[i]!;
      out[i] = { sessionId: c.sessionId, seq: c.seq, at: c.at, data: await compressChunkAsync(c.data) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(COMPRESS_CONCURRENCY, batch.length) }, lane));
  return out;
}

export class StoreSink implements RecordingSink {
  readonly kind = "store";
  #insert: ((batch: ChunkWrite[]) => void) | undefined;
  constructor(
    private readonly store: Store,
    private readonly offload?: ChunkOffload,
    private readonly compression: Compression = "brotli",
  ) {
    const db = store.sqlite;
    if (db) {
      const ins = db.prepare("INSERT INTO recording_chunks (session_id, seq, at, bytes, data) VALUES (?, ?, ?, ?, ?)");
      this.#insert = db.transaction((batch: ChunkWrite[]) => {
        for (const c of batch) ins.run(c.sessionId, c.seq, c.at, c.data.length, c.data);
      });
    }
  }

  async write(chunks: ChunkWrite[]): Promise<void> {
    if (!chunks.length) return;
    const off = this.offload?.(chunks, this.compression === "brotli");
    if (off) return off;
    const batch = await stored(chunks, this.compression);
    // Synchronous prepared statements for SQLite, unless someone else's transaction is open on the
    // shared handle (ours would become a savepoint inside theirs).
    if (this.#insert && !this.store.sqlite?.inTransaction) {
      try {
        this.#insert(batch);
        return;
      } catch (e) {
        // Another connection holds the write lock: Kysely's path waits for it without blocking.
        if (!isBusy(e)) throw e;
      }
    }
    for (let i = 0; i < batch.length; i += 200) {
      await this.store.db
        .insertInto("recording_chunks")
        .values(batch.slice(i, i + 200).map((c) => ({ session_id: c.sessionId, seq: c.seq, at: c.at, bytes: c.data.length, data: c.data })))
        .execute();
    }
  }

  async *read(sessionId: string): AsyncIterable<StoredChunk> {
    let next = 0;
    for (;;) {
      const rows = await this.store.db.selectFrom("recording_chunks").select(["seq", "data"]).where("session_id", "=", sessionId).where("seq", ">=", next).orderBy("seq").limit(64).execute();
      if (!rows.length) return;
      for (const r of rows) yield { seq: Number(r.seq), data: Buffer.from(r.data) };
      next = Number(rows.at(-1)!.seq) + 1;
    }
  }

  async remove(sessionIds: string[]): Promise<number> {
    let freed = 0;
    for (let i = 0; i < sessionIds.length; i += 500) {
      const ids = sessionIds.slice(i, i + 500);
      const sum = await this.store.db.selectFrom("recording_chunks").select((eb) => eb.fn.sum<number>("bytes").as("n")).where("session_id", "in", ids).executeTakeFirst();
      freed += Number(sum?.n ?? 0);
      await this.store.db.deleteFrom("recording_chunks").where("session_id", "in", ids).execute();
    }
    return freed;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const RECORD_HEADER = 12;

export class DirectorySink implements RecordingSink {
  readonly kind = "directory";
  readonly dir: string;
  #made = false;
  /** Sessions whose file is known to have its header line. */
  readonly #headed = new Set<string>();
  constructor(
    dir: string,
    private readonly compression: Compression = "brotli",
  ) {
    this.dir = resolve(dir);
  }

  file(sessionId: string): string {
    // Session ids are UUIDs the gateway made; anything else never becomes a path.
    if (!UUID.test(sessionId)) throw new GatehouseError("SESSION_NOT_FOUND", sessionId);
    return join(this.dir, `${sessionId}.ghrec`);
  }

  async write(chunks: ChunkWrite[]): Promise<void> {
    const batch = await stored(chunks, this.compression);
    if (!this.#made) {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.#made = true;
    }
    const bySession = new Map<string, Buffer[]>();
    for (const c of batch) {
      let parts = bySession.get(c.sessionId);
      if (!parts) {
        parts = [];
        bySession.set(c.sessionId, parts);
        if (!this.#headed.has(c.sessionId)) {
          const exists = await stat(this.file(c.sessionId)).then(() => true, () => false);
          // Version 1 when nothing is compressed: older readers can read the file.
          if (!exists) parts.push(Buffer.from(`${RECORDING_FORMAT} ${this.compression === "none" ? 1 : RECORDING_VERSION} ${c.sessionId}\n`));
        }
      }
      const h = Buffer.allocUnsafe(RECORD_HEADER);
      h.writeUInt32BE(c.data.length, 0);
      h.writeUInt32BE(c.seq, 4);
      h.writeUInt32BE(crc32(c.data), 8);
      parts.push(h, c.data);
    }
    await Promise.all([...bySession].map(([id, parts]) => appendFile(this.file(id), Buffer.concat(parts), { mode: 0o600 })));
    for (const id of bySession.keys()) this.#headed.add(id);
  }

  /** The session's recording is complete: drop what is remembered about it. */
  forget(sessionId: string): void {
    this.#headed.delete(sessionId);
  }

  async *read(sessionId: string): AsyncIterable<StoredChunk> {
    const path = this.file(sessionId);
    try {
      await stat(path);
    } catch {
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    let headerDone = false;
    for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 })) {
      buf = buf.length ? Buffer.concat([buf, piece as Buffer]) : (piece as Buffer);
      if (!headerDone) {
        const nl = buf.indexOf(0x0a);
        if (nl < 0) continue;
        const header = buf.subarray(0, nl).toString("utf8").split(" ");
        if (header[0] !== RECORDING_FORMAT || !READABLE_VERSIONS.includes(Number(header[1]))) throw new GatehouseError("RECORDING_UNREADABLE", `${path} is not a recording of version ${READABLE_VERSIONS.join(" or ")}`);
        buf = buf.subarray(nl + 1);
        headerDone = true;
      }
      while (buf.length >= RECORD_HEADER) {
        const len = buf.readUInt32BE(0);
        if (buf.length < RECORD_HEADER + len) break;
        const seq = buf.readUInt32BE(4);
        const data = buf.subarray(RECORD_HEADER, RECORD_HEADER + len);
        if (crc32(data) !== buf.readUInt32BE(8)) throw new GatehouseError("RECORDING_UNREADABLE", `chunk ${seq} of session ${sessionId} fails its CRC`);
        yield { seq, data };
        buf = buf.subarray(RECORD_HEADER + len);
      }
    }
    // Leftover bytes: a record torn by a crash while appending. Everything before it was read.
  }

  async remove(sessionIds: string[]): Promise<number> {
    let freed = 0;
    for (const id of sessionIds) {
      const path = this.file(id);
      try {
        freed += (await stat(path)).size;
        await rm(path);
      } catch {
        /* already gone */
      }
    }
    return freed;
  }
}

export function openSink(store: Store, storage: "store" | "directory", directory: string, offload?: ChunkOffload, compression: Compression = "brotli"): RecordingSink {
  return storage === "directory" ? new DirectorySink(directory, compression) : new StoreSink(store, offload, compression);
}

/** Check a directory can be written to (start-up check). */
export async function checkWritable(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const probe = join(dir, `.probe-${process.pid}`);
  const h = await open(probe, "w");
  await h.close();
  await rm(probe);
}
