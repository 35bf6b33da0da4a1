// Many clients that come and go while the cluster is abused, each recording
// what it was sent, for the chaos run's history checker (bench/chaos_check.py).
// Official socket.io-client, WebSocket only, all in one process.
//
//   node chaos.mjs --clients FILE --nodes URL1,URL2,... --out HISTORY.jsonl
//                  [--seed N] [--churn-per-min X] [--status-ms 1000] [--window 50]
//                  [--connect-timeout-ms 5000]
//
// FILE is a JSON list of {"client", "user", "token"}. Each client holds one
// socket at a time, to a node picked at random (seeded: a run can be replayed)
// on each connect, with auth {token, last_offset}: 0 at first, then the highest
// offset it has received. Every batch is acknowledged (ack {offset}: its last
// item's). Socket.io-client's own reconnection is off: this script decides.
//   - churn: while not settling, each client closes its socket after an
//     exponential time (mean 60 / --churn-per-min s; 0: never) and connects
//     again 0.1-2 s later;
//   - a disconnect it did not ask for (server, transport close or error, ping
//     timeout): again 0.2-2 s later;
//   - a connect_error (refused, or --connect-timeout-ms passed, 10 s by
//     default): again after the refusal's retry_after if it has one, else
//     0.5-3 s later, that doubled for each failure in a row, up to 2-12 s.
// At most --window clients are connecting for the first time at once.
//
// History (--out, appended, one JSON object a line, written at least once a
// second and at exit); t is epoch seconds:
//   {"type":"connect","client","user","conn","node","t","last_offset"}
//   {"type":"batch","client","conn","node","t","items":[[offset,id,seq],...]}
//   {"type":"reload","client","conn","node","t","first_offset","epoch"}
//   {"type":"error","client","conn","node","t","error","detail"}
//   {"type":"disconnect","client","conn","node","t","reason","by":"client"|"server"}
//   {"type":"connect_error","client","node","t","message","retry_after","retry_ms"}
//   {"type":"final","client","user","t","connected","last_offset"}  (at close)
// conn counts a client's connections (1, 2, ...); seq is the item's payload.seq.
//
// stdin, one command a line: "settle" stops the churn; once every client is
// connected, {"event":"settled","connected"} is printed (once). "close" (or
// stdin ending) closes every socket, writes the final records and exits 0.
// stdout: {"event":"ready"} once every client has connected once, then one
// {"event":"status", connected, received, batches, reloads, connect_errors,
// disconnects, ...} per --status-ms, and {"event":"done", ...} at the end.
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import { parseArgs, print } from "./cli.mjs";

const { opt } = parseArgs(process.argv.slice(2), 0);
const clientsFile = opt("--clients");
const nodes = (opt("--nodes", "") || "").split(",").filter(Boolean);
const outPath = opt("--out");
if (!clientsFile || nodes.length === 0 || !outPath) {
  process.stderr.write("usage: node chaos.mjs --clients FILE --nodes URL,... --out HISTORY.jsonl\n");
  process.exit(2);
}
const seed = Number(opt("--seed", "1")) >>> 0;
const churnPerMin = Number(opt("--churn-per-min", "0"));
const statusMs = Number(opt("--status-ms", "1000"));
const windowSize = Number(opt("--window", "50"));
const connectTimeoutMs = Number(opt("--connect-timeout-ms", "10000"));

const specs = JSON.parse(readFileSync(clientsFile, "utf8"));
const n = specs.length;

// -- seeded randomness (mulberry32) ---------------------------------------------
let rngState = seed || 1;
const random = () => {
  rngState = (rngState + 0x6d2b79f5) | 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const between = (lo, hi) => lo + random() * (hi - lo);
const pickNode = () => Math.floor(random() * nodes.length);

// -- the history file: buffered, written at least once a second ---------------------
const out = openSync(outPath, "a");
let outClosed = false;
let pending = [];
let pendingChars = 0;
const flush = () => {
  if (pending.length === 0) return;
  const text = pending.join("");
  pending = [];
  pendingChars = 0;
  writeSync(out, text);
};
const record = (obj) => {
  if (outClosed) return;
  const line = JSON.stringify(obj) + "\n";
  pending.push(line);
  pendingChars += line.length;
  if (pendingChars > 1 << 20) flush();
};
const now = () => Math.round(performance.timeOrigin + performance.now()) / 1000;

// -- the clients ----------------------------------------------------------------------
const clients = specs.map((spec) => ({
  name: spec.client, user: spec.user, token: spec.token,
  socket: null, node: -1, conn: 0, connected: false, lastOffset: 0, everConnected: false,
  timer: null, // the next churn close, or the next connect
  firstPending: false, // its first connect holds a place in the window
  failures: 0, // connect_errors since it was last connected
}));

let settling = false, settledSaid = false, readySaid = false, closing = false;
let connected = 0, ever = 0, received = 0, batches = 0, reloads = 0;
let connectErrors = 0, disconnects = 0, serverDisconnects = 0, dials = 0, errors = 0;
const reasons = {};
let nextFirst = 0, firstInFlight = 0;

const clearTimer = (c) => {
  if (c.timer !== null) { clearTimeout(c.timer); c.timer = null; }
};
const later = (c, ms, fn) => {
  clearTimer(c);
  c.timer = setTimeout(() => { c.timer = null; fn(); }, ms);
};

const maybeSettled = () => {
  if (settling && !settledSaid && connected === n) {
    settledSaid = true;
    print({ event: "settled", connected });
  }
};

const scheduleChurn = (c) => {
  if (settling || closing || churnPerMin <= 0) return;
  const meanMs = 60000 / churnPerMin;
  later(c, -Math.log(1 - random()) * meanMs, () => {
    if (settling || closing || !c.connected) return;
    c.socket.disconnect(); // "io client disconnect": recorded by the handler
  });
};

const firstDone = (c) => {
  if (c.firstPending) {
    c.firstPending = false;
    firstInFlight -= 1;
    openFirsts();
  }
};

const dial = (c) => {
  if (closing) return;
  clearTimer(c);
  const node = pickNode();
  dials += 1;
  const lastOffset = c.lastOffset;
  const socket = io(nodes[node], {
    auth: { token: c.token, last_offset: lastOffset },
    transports: ["websocket"], reconnection: false, forceNew: true, timeout: connectTimeoutMs,
  });
  c.socket = socket;
  c.node = node;
  const mine = () => c.socket === socket && !closing;

  socket.on("connect", () => {
    if (!mine()) { socket.disconnect(); return; }
    c.conn += 1;
    c.connected = true;
    c.failures = 0;
    connected += 1;
    record({ type: "connect", client: c.name, user: c.user, conn: c.conn, node, t: now(),
      last_offset: lastOffset });
    if (!c.everConnected) {
      c.everConnected = true;
      ever += 1;
      if (ever === n && !readySaid) { readySaid = true; print({ event: "ready" }); }
    }
    firstDone(c);
    scheduleChurn(c);
    maybeSettled();
  });

  socket.on("notifications", (batch) => {
    if (c.socket !== socket || !Array.isArray(batch) || batch.length === 0) return;
    const items = new Array(batch.length);
    let top = c.lastOffset;
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i];
      const seq = e.payload && e.payload.seq !== undefined ? e.payload.seq : null;
      items[i] = [e.offset, e.id, seq];
      if (e.offset > top) top = e.offset;
    }
    c.lastOffset = top;
    received += batch.length;
    batches += 1;
    record({ type: "batch", client: c.name, conn: c.conn, node, t: now(), items });
    socket.emit("ack", { offset: batch[batch.length - 1].offset });
  });

  socket.on("reload", (data) => {
    if (c.socket !== socket) return;
    reloads += 1;
    record({ type: "reload", client: c.name, conn: c.conn, node, t: now(),
      first_offset: data?.first_offset ?? null, epoch: data?.epoch ?? null,
      reason: data?.reason ?? null });
  });

  socket.on("error", (data) => {
    if (c.socket !== socket) return;
    errors += 1;
    record({ type: "error", client: c.name, conn: c.conn, node, t: now(),
      error: data?.error ?? null, detail: data?.detail ?? String(data) });
  });

  socket.on("disconnect", (reason) => {
    if (c.socket !== socket) return;
    const byClient = reason === "io client disconnect";
    if (c.connected) { c.connected = false; connected -= 1; }
    disconnects += 1;
    if (!byClient) serverDisconnects += 1;
    reasons[reason] = (reasons[reason] ?? 0) + 1;
    record({ type: "disconnect", client: c.name, conn: c.conn, node, t: now(), reason,
      by: byClient ? "client" : "server" });
    c.socket = null;
    socket.removeAllListeners();
    socket.close();
    if (closing) return;
    later(c, byClient ? between(100, 2000) : between(200, 2000), () => dial(c));
  });

  socket.on("connect_error", (err) => {
    if (c.socket !== socket) return;
    connectErrors += 1;
    c.failures += 1;
    const retryAfter = err?.data?.retry_after;
    // the server's retry_after; else 0.5-3 s, doubled on each failure in a row up to 4x, so
    // that clients timing out on an overloaded node do not keep it busy with dead handshakes
    const ms = typeof retryAfter === "number" && retryAfter > 0
      ? retryAfter * 1000 + between(0, 250)
      : between(500, 3000) * Math.min(4, 2 ** (c.failures - 1));
    record({ type: "connect_error", client: c.name, node, t: now(),
      message: String(err?.message ?? err), retry_after: retryAfter ?? null,
      retry_ms: Math.round(ms) });
    c.socket = null;
    socket.removeAllListeners();
    socket.close();
    firstDone(c);
    if (closing) return;
    later(c, ms, () => dial(c));
  });
};

// the first connect of each client, at most windowSize at once
const openFirsts = () => {
  while (!closing && firstInFlight < windowSize && nextFirst < n) {
    const c = clients[nextFirst++];
    c.firstPending = true;
    firstInFlight += 1;
    dial(c);
  }
};

const status = (event) => {
  const cpu = process.cpuUsage();
  print({
    event, connected, ever, received, batches, reloads, connect_errors: connectErrors,
    disconnects, server_disconnects: serverDisconnects, dials, errors, reasons,
    cpu_ms: Math.round((cpu.user + cpu.system) / 1000),
    rss_mb: Math.round(process.memoryUsage.rss() / 1048576),
  });
};

const flusher = setInterval(flush, 1000);
const ticker = setInterval(() => status("status"), statusMs);

const settle = () => {
  if (settling) return;
  settling = true;
  for (const c of clients) if (c.connected) clearTimer(c); // the churn's; reconnects go on
  maybeSettled();
};

const close = () => {
  if (closing) return;
  const t = now();
  const finals = clients.map((c) => ({ type: "final", client: c.name, user: c.user, t,
    connected: c.connected, last_offset: c.lastOffset }));
  closing = true;
  clearInterval(ticker);
  for (const c of clients) {
    clearTimer(c);
    if (c.socket) c.socket.disconnect(); // connected: its disconnect is recorded, by client
  }
  for (const f of finals) record(f);
  flush();
  outClosed = true;
  closeSync(out);
  clearInterval(flusher);
  status("done");
  process.stdout.write("", () => setTimeout(() => process.exit(0), 50));
};

process.on("uncaughtException", (err) => {
  process.stderr.write(`chaos.mjs: ${err?.stack ?? err}\n`);
  try { flush(); } catch { /* the file is what it is */ }
  process.exit(1);
});
process.stdout.on("error", () => {}); // the parent went away: stdin ends too, then close

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = line.trim();
  if (command === "settle") settle();
  else if (command === "close") close();
}).on("close", close);

if (n === 0) { readySaid = true; print({ event: "ready" }); }
openFirsts();
