// The agent side of a PostgreSQL connection: dial the target, optionally switch to TLS, log in
// with the connection's own credentials (SCRAM-SHA-256, md5, cleartext or trust), and hand back
// an authenticated stream positioned after the server's first ReadyForQuery.
//
// Never: pass the client's startup `options`/`replication` through (they could set a role or
// open a replication session past the gate), or put a credential in an error message.

import { isIP, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import type { PostgresTarget } from "../domain/connection.ts";
import { BackendFramer, BackendType, type BackendFrame, frontendWriter, md5Password, parseAuthentication, parseBackendKeyData, parseNoticeFields, parseParameterStatus, ScramSha256Client, SCRAM_SHA_256 } from "../protocols/postgres/codec/index.ts";
import type { SecretResolver } from "./secrets.ts";

/** Client startup parameters that are passed on to the target; everything else is dropped. */
export const FORWARDED_STARTUP_PARAMETERS = new Set(["application_name", "client_encoding", "DateStyle", "datestyle", "TimeZone", "timezone", "IntervalStyle", "intervalstyle", "extra_float_digits"]);

export class TargetError extends Error {
  constructor(
    message: string,
    readonly sqlstate = "08006",
  ) {
    super(message);
    this.name = "TargetError";
  }
}

export interface PostgresTargetSession {
  socket: Socket | TLSSocket;
  /** Raw ParameterStatus frames from the server, to replay to the client. */
  parameterFrames: Buffer[];
  parameters: Map<string, string>;
  backendKey: { processId: number; secretKey: Buffer };
  /** Bytes the server sent after its first ReadyForQuery (normally none). */
  leftover: Buffer[];
  /** The TLS state towards the target. */
  tls: boolean;
}

function dial(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    s.setNoDelay(true);
    const t = setTimeout(() => {
      s.destroy();
      reject(new TargetError(`connecting to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(t);
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(t);
      reject(new TargetError(`cannot connect to ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
  });
}

function readOneByte(s: Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      cleanup();
      if (b.length > 1) s.unshift(b.subarray(1));
      resolve(b[0]!);
    };
    const onEnd = () => {
      cleanup();
      reject(new TargetError("the target closed the connection during TLS negotiation"));
    };
    const cleanup = () => {
      s.off("data", onData);
      s.off("end", onEnd);
      s.off("error", onEnd);
      s.pause();
    };
    s.on("data", onData);
    s.once("end", onEnd);
    s.once("error", onEnd);
  });
}

async function negotiateTls(s: Socket, target: PostgresTarget, ca: string | undefined): Promise<Socket | TLSSocket> {
  if (target.tls === "disable") return s;
  s.write(frontendWriter.sslRequest());
  const answer = await readOneByte(s);
  if (answer === 0x4e /* N */) {
    if (target.tls === "prefer") return s;
    s.destroy();
    throw new TargetError(`the target ${target.host}:${target.port} does not offer TLS but the connection requires it (tls: ${target.tls})`);
  }
  if (answer !== 0x53 /* S */) {
    s.destroy();
    throw new TargetError("the target answered the TLS request with something other than S or N");
  }
  const verify = target.tls === "verify-full";
  return new Promise((resolve, reject) => {
    // SNI must not carry an IP address (RFC 6066: Node warns, DEP0123, and will ignore it); the
    // certificate is still checked against `host`, IP addresses included (subjectAltName IP).
    // (Found by test/postgres-target-auth.test.ts: verify-full to 127.0.0.1 printed DEP0123.)
    const t = tlsConnect({ socket: s, host: target.host, servername: verify && !isIP(target.host) ? target.host : undefined, rejectUnauthorized: verify, ca: verify ? ca : undefined }, () => {
      t.removeAllListeners("error");
      resolve(t);
    });
    t.once("error", (e) => {
      s.destroy();
      reject(new TargetError(`TLS to the target failed: ${e.message}`));
    });
  });
}

/** Reads backend frames one at a time during the login exchange. */
class FrameReader {
  #framer = new BackendFramer();
  #queue: BackendFrame[] = [];
  #waiter: ((f: BackendFrame | Error) => void) | undefined;
  #error: Error | undefined;
  constructor(private readonly socket: Socket | TLSSocket) {
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("error", this.#onEnd);
  }
  #onData = (chunk: Buffer) => {
    try {
      for (const f of this.#framer.push(chunk)) this.#queue.push(f);
    } catch (e) {
      this.#error = new TargetError(`the target sent a malformed message: ${(e as Error).message}`);
    }
    this.#wake();
  };
  #onEnd = () => {
    this.#error ??= new TargetError("the target closed the connection during login");
    this.#wake();
  };
  #wake() {
    const w = this.#waiter;
    if (!w) return;
    const f = this.#queue.shift();
    if (f) {
      this.#waiter = undefined;
      w(f);
    } else if (this.#error) {
      this.#waiter = undefined;
      w(this.#error);
    }
  }
  next(): Promise<BackendFrame> {
    const f = this.#queue.shift();
    if (f) return Promise.resolve(f);
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiter = (x) => (x instanceof Error ? reject(x) : resolve(x));
    });
  }
  /** Stop reading; return frames already split but not consumed, as raw bytes. */
  detach(): Buffer[] {
    this.socket.off("data", this.#onData);
    this.socket.off("end", this.#onEnd);
    this.socket.off("error", this.#onEnd);
    this.socket.pause();
    return this.#queue.map((f) => f.raw);
  }
}

export interface OpenPostgresOptions {
  /** Client startup parameters; only FORWARDED_STARTUP_PARAMETERS are passed on. */
  clientParameters: Record<string, string>;
  connectTimeoutMs?: number;
}

export async function openPostgresTarget(target: PostgresTarget, secrets: SecretResolver, opts: OpenPostgresOptions): Promise<PostgresTargetSession> {
  const password = target.password !== undefined ? await secrets.resolve(target.password) : undefined;
  const ca = target.ca !== undefined ? await secrets.resolve(target.ca) : undefined;
  const timeout = opts.connectTimeoutMs ?? 10_000;
  const raw = await dial(target.host, target.port, timeout);
  let socket: Socket | TLSSocket;
  try {
    socket = await negotiateTls(raw, target, ca);
  } catch (e) {
    raw.destroy();
    throw e;
  }
  const params: Array<[string, string]> = [
    ["user", target.user],
    ["database", target.database],
  ];
  for (const [k, v] of Object.entries(opts.clientParameters)) if (FORWARDED_STARTUP_PARAMETERS.has(k)) params.push([k, v]);
  const reader = new FrameReader(socket);
  socket.resume();
  const deadline = setTimeout(() => socket.destroy(new TargetError(`login to the target did not finish within ${timeout} ms`)), timeout);
  try {
    socket.write(frontendWriter.startupMessage(params));
    let scram: ScramSha256Client | undefined;
    const parameterFrames: Buffer[] = [];
    const parameters = new Map<string, string>();
    let backendKey: PostgresTargetSession["backendKey"] | undefined;
    const needPassword = () => {
      if (password === undefined) throw new TargetError("the target asks for a password but the connection has none configured (postgres.password)", "28P01");
      return password;
    };
    for (;;) {
      const f = await reader.next();
      switch (f.type) {
        case BackendType.Authentication: {
          const a = parseAuthentication(f.payload);
          if (a.kind === "Ok") break;
          if (a.kind === "CleartextPassword") socket.write(frontendWriter.passwordMessage(needPassword()));
          else if (a.kind === "MD5Password") socket.write(frontendWriter.passwordMessage(md5Password(target.user, needPassword(), a.salt)));
          else if (a.kind === "SASL") {
            if (!a.mechanisms.includes(SCRAM_SHA_256)) throw new TargetError(`the target offers only SASL mechanisms ${a.mechanisms.join(", ")}; SCRAM-SHA-256 is supported`, "28000");
            scram = new ScramSha256Client(needPassword());
            socket.write(frontendWriter.saslInitialResponse(SCRAM_SHA_256, scram.clientFirst()));
          } else if (a.kind === "SASLContinue") {
            if (!scram) throw new TargetError("unexpected SASLContinue from the target");
            socket.write(frontendWriter.saslResponse(scram.clientFinal(a.data)));
          } else if (a.kind === "SASLFinal") {
            if (!scram) throw new TargetError("unexpected SASLFinal from the target");
            scram.verifyServerFinal(a.data);
          } else throw new TargetError(`the target asks for an unsupported authentication method (${a.kind})`, "28000");
          break;
        }
        case BackendType.ParameterStatus: {
          const p = parseParameterStatus(f.payload);
          parameters.set(p.name, p.value);
          parameterFrames.push(f.raw);
          break;
        }
        case BackendType.BackendKeyData:
          backendKey = parseBackendKeyData(f.payload);
          break;
        case BackendType.ErrorResponse: {
          const e = parseNoticeFields(f.payload);
          throw new TargetError(`the target refused the login: ${e.message}`, e.code);
        }
        case BackendType.NoticeResponse:
        case BackendType.NegotiateProtocolVersion:
          break;
        case BackendType.ReadyForQuery: {
          if (scram && !scram.done) throw new TargetError("the target finished login without proving it knows the password (SCRAM)", "28000");
          const leftover = reader.detach();
          clearTimeout(deadline);
          return { socket, parameterFrames, parameters, backendKey: backendKey ?? { processId: 0, secretKey: Buffer.alloc(4) }, leftover, tls: socket !== raw };
        }
        default:
          throw new TargetError(`unexpected message type ${String.fromCharCode(f.type)} from the target during login`);
      }
    }
  } catch (e) {
    clearTimeout(deadline);
    reader.detach();
    socket.destroy();
    if (e instanceof TargetError) throw e;
    throw new TargetError(`login to the target failed: ${(e as Error).message}`);
  }
}

/** Deliver a CancelRequest to the target (a fresh connection, as the protocol requires). */
export async function cancelPostgresTarget(target: PostgresTarget, key: { processId: number; secretKey: Buffer }): Promise<void> {
  const s = await dial(target.host, target.port, 5000);
  await new Promise<void>((resolve) => {
    s.end(frontendWriter.cancelRequest(key.processId, key.secretKey), () => resolve());
    s.on("error", () => resolve());
  });
  s.destroy();
}
