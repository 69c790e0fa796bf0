// The ceiling for any proxy written in Node: accept, dial the target, pipe bytes both ways with
// Nagle off. No parsing, no allocation beyond what the streams do. Run as its own process so it
// competes for the CPU the way the gateway does:
//   node --import tsx bench/postgres/pipe-proxy.ts <listen-port> <target-host> <target-port>

import { connect, createServer } from "node:net";

const [listenPort, targetHost, targetPort] = process.argv.slice(2);
if (!listenPort || !targetHost || !targetPort) {
  process.stderr.write("usage: pipe-proxy.ts <listen-port> <target-host> <target-port>\n");
  process.exit(2);
}

const server = createServer({ noDelay: true }, (client) => {
  const upstream = connect({ host: targetHost, port: Number(targetPort), noDelay: true });
  client.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  upstream.on("error", close);
  client.on("close", close);
  upstream.on("close", close);
});
server.listen(Number(listenPort), "127.0.0.1", () => process.stdout.write(`listening ${listenPort}\n`));
for (const s of ["SIGTERM", "SIGINT"] as const) process.once(s, () => process.exit(0));
