// Many users held open for a long run, for the soak benchmark (official
// socket.io-client, WebSocket only).
//
//   node soak.mjs URL TOKENS_FILE [--node I] [--window N] [--status-ms N] [--give-up-ms N]
//
// TOKENS_FILE has one user token per line; one connection each. At most
// --window connections are being opened at once; one the server refuses is
// tried again 1-3 s later, for --give-up-ms at most. Every batch is acknowledged
// (ack {offset} with the batch's highest offset). A connection that drops
// reconnects (socket.io-client's own backoff; 1-3 s after a disconnect by the
// server) with auth.last_offset set to the highest offset it received, so the
// server replays only what it missed.
//
// Prints one JSON line per --status-ms on stdout, nothing per notification:
//   {"event":"progress"|"ready"|"status"|"done", connected, opened (users that
//    connected at least once), failed (users given up on before they ever connected),
//    failed_users (their line numbers, on "ready" only), connect_errors,
//    disconnects (unexpected), reasons, received (new notifications, total),
//    duplicates (an offset this user already had), out_of_order (lower than
//    one it had, not a duplicate), received_cross (of received, those whose
//    payload.n is not --node: published through another node), batches,
//    hist_t, hist_b, cpu_ms, rss_mb, errors}
// received, duplicates, ... are totals since start; hist_t (targeted) and
// hist_b (broadcasts: payload.b) alone are what this interval added: latency
// (receipt minus payload.t, the publisher's send time in epoch ms; same clock,
// loopback only) counted per bucket, a quarter of a millisecond wide below
// 100 ms and 1 % wide above; each key is its bucket's upper bound in ms. "done" comes after "close" on stdin, or when stdin ends
// (the parent is gone), and the process exits.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import { parseArgs, print, readTokens } from "./cli.mjs";

const { positional: [url, tokensFile], opt } = parseArgs(process.argv.slice(2), 2);
const windowSize = Number(opt("--window", "32"));
const statusMs = Number(opt("--status-ms", "1000"));
const nodeIndex = Number(opt("--node", "-1"));
const giveUpMs = Number(opt("--give-up-ms", "60000"));
const tokens = readTokens(tokensFile);
const n = tokens.length;

const RING = 32; // the offsets each user received last, to tell a duplicate from a late one
const maxOffset = new Float64Array(n);
const ring = new Float64Array(n * RING);
const ringAt = new Uint8Array(n);
const everOpened = new Uint8Array(n);
const firstFailed = new Uint8Array(n);
const LOG_STEP = Math.log(1.01);
let histT = new Map();
let histB = new Map();
let next = 0, inFlight = 0, settled = 0, readyAt = null;
let connected = 0, opened = 0, failed = 0, connectErrors = 0, disconnects = 0;
let received = 0, receivedCross = 0, duplicates = 0, outOfOrder = 0, batches = 0, closing = false;
const reasons = {};
const errors = {};
const sockets = [];

const noteError = (message) => {
  if (message in errors || Object.keys(errors).length < 20) errors[message] = (errors[message] ?? 0) + 1;
};

const bucket = (ms) => {
  if (ms <= 0) return 0;
  if (ms < 100) return Math.ceil(ms * 4) / 4;
  return Math.round(Math.exp(Math.ceil(Math.log(ms) / LOG_STEP) * LOG_STEP) * 10) / 10;
};

const status = (event) => {
  const cpu = process.cpuUsage();
  const line = {
    event, connected, opened, failed, connect_errors: connectErrors, disconnects, reasons,
    received, received_cross: receivedCross, duplicates, out_of_order: outOfOrder, batches,
    hist_t: Object.fromEntries(histT), hist_b: Object.fromEntries(histB),
    cpu_ms: (cpu.user + cpu.system) / 1000, rss_mb: Math.round(process.memoryUsage.rss() / 1048576),
    errors,
  };
  if (event === "ready") line.failed_users = [...firstFailed.keys()].filter((i) => firstFailed[i]);
  histT = new Map();
  histB = new Map();
  print(line);
};

const settle = (index, ok) => {
  if (!ok) { firstFailed[index] = 1; failed += 1; }
  inFlight -= 1;
  settled += 1;
  if (settled === n) { readyAt = Date.now(); status("ready"); }
  openMore();
};

// One user's batch: count what is new, record its latency, ack the highest offset.
const take = (index, socket, batch) => {
  const now = performance.timeOrigin + performance.now();
  let top = maxOffset[index];
  const base = index * RING;
  for (const entry of batch) {
    const offset = entry.offset;
    if (offset <= top) {
      let seen = false;
      for (let k = 0; k < RING; k++) if (ring[base + k] === offset) { seen = true; break; }
      if (seen) { duplicates += 1; continue; }
      outOfOrder += 1;
    } else {
      top = offset;
    }
    ring[base + ringAt[index]] = offset;
    ringAt[index] = (ringAt[index] + 1) % RING;
    received += 1;
    const payload = entry.payload;
    if (payload && payload.n !== nodeIndex) receivedCross += 1;
    const t = payload && payload.t;
    if (typeof t === "number") {
      const key = bucket(now - t);
      const hist = payload.b ? histB : histT;
      hist.set(key, (hist.get(key) ?? 0) + 1);
    }
  }
  maxOffset[index] = top;
  batches += 1;
  socket.emit("ack", { offset: top });
};

const openOne = (index) => {
  const startedAt = Date.now();
  let pending = true;
  const socket = io(url, {
    transports: ["websocket"], forceNew: true, reconnectionDelay: 1000, reconnectionDelayMax: 5000,
    auth: (cb) => cb(maxOffset[index] > 0
      ? { token: tokens[index], last_offset: maxOffset[index] } : { token: tokens[index] }),
  });
  sockets[index] = socket;
  socket.on("connect", () => {
    connected += 1;
    if (!everOpened[index]) { everOpened[index] = 1; opened += 1; }
    if (pending) { pending = false; settle(index, true); }
  });
  socket.on("connect_error", (err) => {
    connectErrors += 1;
    noteError(`connect_error: ${err.message}`);
    if (closing) return;
    if (pending && Date.now() - startedAt > giveUpMs) {
      pending = false;
      socket.close();
      settle(index, false);
      return;
    }
    // refused by the server: socket.io-client does not retry that by itself, an app would
    if (!socket.active) {
      setTimeout(() => {
        if (!closing && !socket.connected && (pending || everOpened[index])) socket.connect();
      }, 1000 + Math.random() * 2000);
    }
  });
  socket.on("disconnect", (reason) => {
    connected -= 1;
    if (closing) return;
    disconnects += 1;
    reasons[reason] = (reasons[reason] ?? 0) + 1;
    // socket.io-client reconnects by itself, except after the server's own disconnect
    if (reason === "io server disconnect") {
      setTimeout(() => { if (!closing && !socket.connected) socket.connect(); }, 1000 + Math.random() * 2000);
    }
  });
  socket.on("notifications", (batch) => take(index, socket, batch));
};

const openMore = () => {
  while (inFlight < windowSize && next < n) {
    inFlight += 1;
    openOne(next);
    next += 1;
  }
};

const timer = setInterval(() => status(readyAt === null ? "progress" : "status"), statusMs);

const finish = () => {
  if (closing) return;
  closing = true;
  clearInterval(timer);
  status("done");
  for (const s of sockets) if (s) s.close();
  process.stdout.write("", () => setTimeout(() => process.exit(0), 100));
};
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "close") finish();
}).on("close", finish);

if (n === 0) { readyAt = Date.now(); status("ready"); }
openMore();
