// Many receiving users in one process, for benchmarks (official socket.io-client).
//
//   node load.mjs URL TOKENS_FILE --expect-total N [--timeout-ms N]
//        [--latency-from created|payload|none] [--hist] [--idle-ms N]
//
// TOKENS_FILE has one user token per line; one WebSocket connection each.
// Every batch is acknowledged. Prints {"event":"ready","connected":K,"cpu_ms"}
// once all are connected, then on the last line {"event":"done","received":N,
// "batches":B (notifications events),"last_receipt_ms":epoch_ms,
// "latency_ms":{p50,p95,p99,max},"cpu_ms","errors":[...]}. cpu_ms is this
// process's user + system CPU so far, so the caller can tell what the
// receivers themselves cost.
//
// Latency is receipt time minus, with --latency-from created (the default),
// the notification's created_at, or with payload, payload.t (the publisher's
// send time, epoch ms: the whole publish-to-client path); none skips it, to
// keep a throughput run's receivers as light as they can be. Same clock:
// loopback only. --hist adds latency_hist, counts per quarter millisecond,
// so the caller can merge several processes' distributions exactly.
// --idle-ms ends the run early once nothing has arrived for that long after
// the first receipt: a server that dropped clients shows up as a shortfall
// in seconds, not at the timeout.
import { io } from "socket.io-client";
import { parseArgs, print, readTokens } from "./cli.mjs";

const { positional: [url, tokensFile], opt, flag } = parseArgs(process.argv.slice(2), 2);
const expectTotal = Number(opt("--expect-total", "0"));
const timeoutMs = Number(opt("--timeout-ms", "120000"));
const latencyFrom = opt("--latency-from", "created");
const wantHist = flag("--hist");
const idleMs = Number(opt("--idle-ms", "0"));
const tokens = readTokens(tokensFile);
const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

let connected = 0;
let received = 0;
let batches = 0;
let lastReceipt = 0;
let finished = false;
const latencies = [];
const errors = [];
const sockets = [];

const histogram = () => {
  const counts = {};
  for (const v of latencies) {
    const key = Math.round(v * 4);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
};

const finish = () => {
  if (finished) return;
  finished = true;
  latencies.sort((a, b) => a - b);
  const q = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] : null);
  print({
    event: "done",
    received,
    batches,
    last_receipt_ms: lastReceipt,
    latency_ms: { p50: q(0.5), p95: q(0.95), p99: q(0.99), max: latencies.at(-1) ?? null },
    ...(wantHist ? { latency_hist: histogram() } : {}),
    cpu_ms: cpuMs(),
    errors: errors.slice(0, 10),
  });
  for (const s of sockets) s.close();
  // exit once stdout is flushed: a pipe takes 64 KiB at a time, and a large
  // histogram line would be cut if the reader is busy with another process
  process.stdout.write("", () => setTimeout(() => process.exit(0), 100));
};

// One handler per latency mode, chosen once: the hot path does no option checks.
const record = {
  created: (batch) => {
    const now = Date.now();
    for (const n of batch) latencies.push(now - Date.parse(n.created_at));
  },
  payload: (batch) => {
    const now = performance.timeOrigin + performance.now();
    for (const n of batch) latencies.push(now - n.payload.t);
  },
  none: () => {},
}[latencyFrom];
if (!record) throw new Error(`--latency-from must be created, payload or none, not ${latencyFrom}`);

for (const token of tokens) {
  const socket = io(url, { transports: ["websocket"], auth: { token }, reconnection: false, forceNew: true });
  sockets.push(socket);
  socket.on("connect", () => {
    connected += 1;
    if (connected === tokens.length) print({ event: "ready", connected, cpu_ms: cpuMs() });
  });
  socket.on("connect_error", (err) => errors.push(err.message));
  socket.on("disconnect", (reason) => {
    if (!finished) errors.push(`disconnect: ${reason}`);
  });
  socket.on("notifications", (batch) => {
    received += batch.length;
    batches += 1;
    lastReceipt = Date.now();
    record(batch);
    socket.emit("ack", { offset: batch[batch.length - 1].offset });
    if (expectTotal && received >= expectTotal) finish();
  });
}
setTimeout(finish, timeoutMs);
if (idleMs > 0) {
  setInterval(() => {
    if (received > 0 && Date.now() - lastReceipt > idleMs) finish();
  }, Math.min(idleMs, 250)).unref();
}
