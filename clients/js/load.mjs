// Many receiving users in one process, for benchmarks (official socket.io-client).
//
//   node load.mjs URL TOKENS_FILE --expect-total N [--timeout-ms N]
//
// TOKENS_FILE has one user token per line; one WebSocket connection each.
// Every batch is acknowledged. Prints {"event":"ready","connected":K} once all
// are connected, then on the last line {"event":"done","received":N,
// "last_receipt_ms":epoch_ms,"latency_ms":{p50,p95,p99,max},"errors":[...]}.
// Latency is receipt time minus the notification's created_at (same clock:
// loopback only).
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";

const [url, tokensFile, ...rest] = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : fallback;
};
const expectTotal = Number(opt("--expect-total", "0"));
const timeoutMs = Number(opt("--timeout-ms", "120000"));
const tokens = readFileSync(tokensFile, "utf8").split("\n").filter(Boolean);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

let connected = 0;
let received = 0;
let lastReceipt = 0;
const latencies = [];
const errors = [];
const sockets = [];

const finish = () => {
  latencies.sort((a, b) => a - b);
  const q = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] : null);
  print({
    event: "done",
    received,
    last_receipt_ms: lastReceipt,
    latency_ms: { p50: q(0.5), p95: q(0.95), p99: q(0.99), max: latencies.at(-1) ?? null },
    errors: errors.slice(0, 10),
  });
  for (const s of sockets) s.close();
  setTimeout(() => process.exit(0), 100);
};

for (const token of tokens) {
  const socket = io(url, { transports: ["websocket"], auth: { token }, reconnection: false, forceNew: true });
  sockets.push(socket);
  socket.on("connect", () => {
    connected += 1;
    if (connected === tokens.length) print({ event: "ready", connected });
  });
  socket.on("connect_error", (err) => errors.push(err.message));
  socket.on("notifications", (batch) => {
    const now = Date.now();
    received += batch.length;
    lastReceipt = now;
    for (const n of batch) latencies.push(now - Date.parse(n.created_at));
    socket.emit("ack", { offset: batch[batch.length - 1].offset });
    if (expectTotal && received >= expectTotal) finish();
  });
}
setTimeout(finish, timeoutMs);
