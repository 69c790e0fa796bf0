// A bounded least-recently-used cache keyed by exact text, so a hot statement (an ORM's
// `SELECT … WHERE id = $1`, pgbench's loop) is parsed once. Keys are compared byte for byte:
// the cache must never normalise, trim or case-fold a key, because two texts that differ in
// any way may classify differently. Values must be immutable (frozen) before they go in.

export interface LruCacheOptions {
  /** Most entries kept; the least recently used one is evicted beyond it. Default 10,000. */
  maxEntries?: number;
  /** Texts longer than this (UTF-16 code units) are never stored. Default 65,536 (64 Ki). */
  maxKeyLength?: number;
}

export interface LruCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  size: number;
}

export const DEFAULT_CACHE_ENTRIES = 10_000;
export const DEFAULT_MAX_KEY_LENGTH = 64 * 1024;

export class LruCache<V> {
  readonly maxEntries: number;
  readonly maxKeyLength: number;
  // A Map iterates in insertion order: re-inserting on a hit moves the key to the end, so the
  // first key is always the least recently used.
  readonly #entries = new Map<string, V>();
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  constructor(options: LruCacheOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_CACHE_ENTRIES;
    const maxKeyLength = options.maxKeyLength ?? DEFAULT_MAX_KEY_LENGTH;
    if (!Number.isInteger(maxEntries) || maxEntries < 0) {
      throw new RangeError(`LruCache maxEntries must be a non-negative integer, got ${maxEntries}`);
    }
    if (!Number.isInteger(maxKeyLength) || maxKeyLength < 0) {
      throw new RangeError(`LruCache maxKeyLength must be a non-negative integer, got ${maxKeyLength}`);
    }
    this.maxEntries = maxEntries;
    this.maxKeyLength = maxKeyLength;
  }

  get(key: string): V | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  /** Stores `value` unless the key is too long or the cache holds no entries at all. */
  set(key: string, value: V): void {
    if (this.maxEntries === 0 || key.length > this.maxKeyLength) return;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
      this.#evictions++;
    }
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }

  stats(): LruCacheStats {
    return { hits: this.#hits, misses: this.#misses, evictions: this.#evictions, size: this.#entries.size };
  }
}
