// The client side of PostgreSQL's password authentication: SCRAM-SHA-256 (RFC 5802 / RFC 7677, as
// PostgreSQL profiles it) and the legacy MD5 hash. It exists because the gateway's agent logs in
// to target servers with credentials the caller never sees. It is pure apart from drawing the
// client nonce (injectable for tests). It must never accept a server that cannot prove it knows
// the password (the server signature is always verified, in constant time), never accept a nonce
// that does not extend ours, and never let a server make it spin (iterations are capped).
//
// PostgreSQL specifics: the user name in client-first is ignored by the server (the startup
// packet's user is used), so it is sent empty, as libpq does; the GS2 header is "n,," (no channel
// binding; SCRAM-SHA-256-PLUS is not implemented).

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { ProtocolError } from "./errors.ts";

export const SCRAM_SHA_256 = "SCRAM-SHA-256";
/** Iteration counts above this are refused: PBKDF2 runs synchronously. PostgreSQL's default is 4096. */
export const DEFAULT_MAX_SCRAM_ITERATIONS = 1_000_000;

const GS2_HEADER = "n,,";
const CHANNEL_BINDING = Buffer.from(GS2_HEADER).toString("base64"); // "biws"

function invalid(message: string): ProtocolError {
  return new ProtocolError("PG_SCRAM_MESSAGE_INVALID", message);
}

/** printable = %x21-2B / %x2D-7E (RFC 5802): any visible ASCII but ','. */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(s: string, what: string): Buffer {
  if (s === "" || !BASE64.test(s)) throw invalid(`SCRAM ${what} is not valid base64`);
  return Buffer.from(s, "base64");
}

/** RFC 5802 saslname: '=' and ',' are escaped. */
function escapeUsername(u: string): string {
  return u.replaceAll("=", "=3D").replaceAll(",", "=2C");
}

// ---------------------------------------------------------------------------------------------
// SASLprep (RFC 4013), as PostgreSQL's pg_saslprep applies it to passwords

type Ranges = ReadonlyArray<readonly [number, number]>;
const inRanges = (cp: number, ranges: Ranges) => ranges.some(([lo, hi]) => cp >= lo && cp <= hi);

/** C.1.2 non-ASCII spaces: mapped to SPACE (U+200B included, as PostgreSQL does). */
const NON_ASCII_SPACE: Ranges = [[0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
/** B.1 commonly mapped to nothing. */
const MAPPED_TO_NOTHING: Ranges = [[0xad, 0xad], [0x34f, 0x34f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200c, 0x200d], [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff]];
/** C.1.2, C.2.1, C.2.2, C.6, C.7, C.8, C.9; C.3 (private use), C.4 (non-characters), C.5 (surrogates) and A.1 via GENERAL. */
const PROHIBITED: Ranges = [
  ...NON_ASCII_SPACE,
  [0x0, 0x1f], [0x7f, 0x9f], [0x6dd, 0x6dd], [0x70f, 0x70f], [0x180e, 0x180e], [0x200c, 0x200f], [0x2028, 0x202e],
  [0x2060, 0x2063], [0x206a, 0x206f], [0x2ff0, 0x2ffb], [0x340, 0x341], [0xfeff, 0xfeff], [0xfff9, 0xfffd],
  [0x1d173, 0x1d17a], [0xe0001, 0xe0001], [0xe0020, 0xe007f],
];
/** Private use, surrogates, and unassigned (which includes the non-characters) in today's Unicode. */
const PROHIBITED_CATEGORY = /^[\p{Co}\p{Cs}\p{Cn}]$/u;

/**
 * SASLprep a password the way PostgreSQL does before hashing it: ASCII passwords are used as they
 * are; otherwise map, NFKC-normalise, and if the result contains a prohibited character use the
 * original string unchanged (PostgreSQL's fallback for passwords SASLprep rejects).
 * Approximations: the bidirectional check of RFC 3454 §6 is not applied, and "unassigned" means
 * unassigned in the running Unicode version rather than in Unicode 3.2.
 */
export function saslprep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  let mapped = "";
  for (const ch of password) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped += " ";
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped += ch;
  }
  mapped = mapped.normalize("NFKC");
  for (const ch of mapped) {
    if (inRanges(ch.codePointAt(0)!, PROHIBITED) || PROHIBITED_CATEGORY.test(ch)) return password;
  }
  return mapped;
}

// ---------------------------------------------------------------------------------------------
// The exchange, step by step

export interface ScramClientFirst {
  /** The client-first message, sent in SASLInitialResponse. */
  message: string;
  /** client-first-message-bare, part of the AuthMessage. */
  bare: string;
  /** The client nonce. */
  nonce: string;
}

export interface ScramClientFirstOptions {
  /** The client nonce; by default 18 random bytes in base64 (as libpq). Printable ASCII without ','. */
  nonce?: string;
  /** Default "" (PostgreSQL ignores it and uses the startup packet's user). */
  username?: string;
}

export function scramClientFirst(opts: ScramClientFirstOptions = {}): ScramClientFirst {
  const nonce = opts.nonce ?? randomBytes(18).toString("base64");
  if (!PRINTABLE.test(nonce)) throw invalid("SCRAM client nonce must be printable ASCII without ','");
  const bare = `n=${escapeUsername(opts.username ?? "")},r=${nonce}`;
  return { message: GS2_HEADER + bare, bare, nonce };
}

export interface ScramServerFirst {
  /** The message as received, part of the AuthMessage. */
  message: string;
  /** The combined nonce (client nonce + server nonce). */
  nonce: string;
  salt: Buffer;
  iterations: number;
}

/** Read and check the server-first message (r=…,s=…,i=…[,extensions]). */
export function parseScramServerFirst(
  message: string,
  clientNonce: string,
  opts: { maxIterations?: number } = {},
): ScramServerFirst {
  const attrs = message.split(",");
  const [r, s, i] = attrs;
  if (r?.startsWith("m=")) throw invalid("SCRAM server-first message requires an unsupported extension (m=)");
  if (!r?.startsWith("r=") || !s?.startsWith("s=") || !i?.startsWith("i=")) {
    throw invalid("SCRAM server-first message is malformed: expected r=…,s=…,i=…");
  }
  const nonce = r.slice(2);
  if (!PRINTABLE.test(nonce)) throw invalid("SCRAM server nonce is not printable ASCII");
  if (!nonce.startsWith(clientNonce) || nonce.length <= clientNonce.length) {
    throw new ProtocolError("PG_SCRAM_NONCE_MISMATCH", "SCRAM server nonce does not extend the client nonce");
  }
  const salt = decodeBase64(s.slice(2), "salt");
  const iv = i.slice(2);
  const max = opts.maxIterations ?? DEFAULT_MAX_SCRAM_ITERATIONS;
  const iterations = /^[1-9][0-9]{0,9}$/.test(iv) ? Number(iv) : Number.NaN;
  if (!(iterations >= 1 && iterations <= max)) {
    throw new ProtocolError("PG_SCRAM_ITERATIONS_INVALID", `SCRAM iteration count ${JSON.stringify(iv)} is not an integer in 1..${max}`);
  }
  return { message, nonce, salt, iterations };
}

export interface ScramClientFinal {
  /** The client-final message, sent in SASLResponse. */
  message: string;
  /** The signature the server must prove in server-final; keep it for verifyScramServerFinal. */
  serverSignature: Buffer;
}

const hmac = (key: Buffer, data: string) => createHmac("sha256", key).update(data, "utf8").digest();

/** Compute the proof. SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, i). */
export function scramClientFinal(first: ScramClientFirst, server: ScramServerFirst, password: string): ScramClientFinal {
  const saltedPassword = pbkdf2Sync(Buffer.from(saslprep(password), "utf8"), server.salt, server.iterations, 32, "sha256");
  const clientKey = hmac(saltedPassword, "Client Key");
  const storedKey = createHash("sha256").update(clientKey).digest();
  const withoutProof = `c=${CHANNEL_BINDING},r=${server.nonce}`;
  const authMessage = `${first.bare},${server.message},${withoutProof}`;
  const clientSignature = hmac(storedKey, authMessage);
  const proof = Buffer.allocUnsafe(32);
  for (let k = 0; k < 32; k++) proof[k] = clientKey[k]! ^ clientSignature[k]!;
  const serverKey = hmac(saltedPassword, "Server Key");
  return { message: `${withoutProof},p=${proof.toString("base64")}`, serverSignature: hmac(serverKey, authMessage) };
}

/** Check the server-final message (v=… or e=…); throws unless the server proved the password. */
export function verifyScramServerFinal(message: string, expectedServerSignature: Buffer): void {
  const first = message.split(",", 1)[0] ?? "";
  if (first.startsWith("e=")) {
    throw new ProtocolError("PG_SCRAM_SERVER_ERROR", `SCRAM authentication failed on the server: ${first.slice(2)}`);
  }
  if (!first.startsWith("v=")) throw invalid("SCRAM server-final message is malformed: expected v=…");
  const got = decodeBase64(first.slice(2), "server signature");
  if (got.length !== expectedServerSignature.length || !timingSafeEqual(got, expectedServerSignature)) {
    throw new ProtocolError("PG_SCRAM_SERVER_SIGNATURE_INVALID", "SCRAM server signature is wrong: the server does not know the password");
  }
}

/**
 * The same exchange as a small state machine:
 *   const c = new ScramSha256Client(password);
 *   send saslInitialResponse(SCRAM_SHA_256, c.clientFirst());
 *   on AuthenticationSASLContinue(data): send saslResponse(c.clientFinal(data));
 *   on AuthenticationSASLFinal(data): c.verifyServerFinal(data)   // throws on a bad server
 * `done` is true only after the server's signature verified.
 */
export class ScramSha256Client {
  private readonly password: string;
  private readonly opts: ScramClientFirstOptions & { maxIterations?: number };
  private first: ScramClientFirst | null = null;
  private expected: Buffer | null = null;
  private verified = false;

  constructor(password: string, opts: ScramClientFirstOptions & { maxIterations?: number } = {}) {
    this.password = password;
    this.opts = opts;
  }

  get done(): boolean {
    return this.verified;
  }

  clientFirst(): string {
    if (this.first !== null) throw new Error("ScramSha256Client.clientFirst() called twice");
    this.first = scramClientFirst(this.opts);
    return this.first.message;
  }

  clientFinal(serverFirst: string | Buffer): string {
    if (this.first === null || this.expected !== null) throw invalid("unexpected SCRAM server-first message");
    const server = parseScramServerFirst(String(serverFirst), this.first.nonce, this.opts);
    const final = scramClientFinal(this.first, server, this.password);
    this.expected = final.serverSignature;
    return final.message;
  }

  verifyServerFinal(serverFinal: string | Buffer): void {
    if (this.expected === null || this.verified) throw invalid("unexpected SCRAM server-final message");
    verifyScramServerFinal(String(serverFinal), this.expected);
    this.verified = true;
  }
}

// ---------------------------------------------------------------------------------------------
// MD5

const md5hex = (data: Buffer | string) => createHash("md5").update(data).digest("hex");

/** The PasswordMessage answer to AuthenticationMD5Password: "md5" + md5(md5(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  if (salt.length !== 4) throw new ProtocolError("PG_FIELD_INVALID", `MD5 salt must be 4 bytes, got ${salt.length}`);
  const inner = md5hex(Buffer.from(password + user, "utf8"));
  return `md5${md5hex(Buffer.concat([Buffer.from(inner, "latin1"), salt]))}`;
}
