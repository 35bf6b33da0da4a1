// Many idle connections held open, for the connections benchmark (official
// socket.io-client, WebSocket only).
//
//   node hold.mjs URL TOKENS_FILE [--window N] [--status-ms N] [--local-address IP]
//
// TOKENS_FILE has one user token per line; one connection each. At most
// --window connections are being opened at a time, so a few thousand clients
// do not flood the server's accept queue at once (a dropped SYN costs a 1 s
// retransmit, which would measure the kernel, not the server).
//
// Prints JSON lines on stdout:
//   {"event":"progress",...}  while opening, every --status-ms
//   {"event":"ready",...}     once every connection has either opened or failed
//   {"event":"status",...}    every --status-ms after that
//   {"event":"done",...}      on the last line, after "close" on stdin (or stdin ends)
// Each carries: connected (open now), opened (ever), failed, disconnects (open
// connections that closed), pings_min / pings_total (Engine.IO pings seen per
// open connection, the health check), errors and disconnect reasons (samples).
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import { parseArgs, print, readTokens } from "./cli.mjs";

const { positional: [url, tokensFile], opt } = parseArgs(process.argv.slice(2), 2);
const windowSize = Number(opt("--window", "32"));
const statusMs = Number(opt("--status-ms", "1000"));
const localAddress = opt("--local-address", undefined);
const tokens = readTokens(tokensFile);

const started = Date.now();
let next = 0;
let inFlight = 0;
let connected = 0;
let opened = 0;
let failed = 0;
let disconnects = 0;
let readyAt = null;
const errors = [];
const reasons = {};
const sockets = [];
const pings = [];

const counts = (event) => {
  let pingsMin = null;
  let pingsTotal = 0;
  for (let i = 0; i < sockets.length; i++) {
    if (!sockets[i].connected) continue;
    pingsTotal += pings[i];
    if (pingsMin === null || pings[i] < pingsMin) pingsMin = pings[i];
  }
  return {
    event, connected, opened, failed, disconnects, pings_min: pingsMin, pings_total: pingsTotal,
    ms: Date.now() - started, ready_ms: readyAt === null ? null : readyAt - started,
    errors: errors.slice(0, 5), reasons,
  };
};

const settle = () => {
  inFlight -= 1;
  if (readyAt === null && opened + failed === tokens.length) {
    readyAt = Date.now();
    print(counts("ready"));
  }
  openMore();
};

const openOne = (index) => {
  const options = { transports: ["websocket"], auth: { token: tokens[index] },
                    reconnection: false, forceNew: true };
  if (localAddress) options.localAddress = localAddress;
  const socket = io(url, options);
  sockets[index] = socket;
  pings[index] = 0;
  let settled = false;
  // the Manager re-emits each Engine.IO ping; the client answers it with a pong
  socket.io.on("ping", () => { pings[index] += 1; });
  socket.on("connect", () => {
    connected += 1;
    opened += 1;
    if (!settled) { settled = true; settle(); }
  });
  socket.on("connect_error", (err) => {
    failed += 1;
    if (errors.length < 20) errors.push(err.message);
    if (!settled) { settled = true; settle(); }
  });
  socket.on("disconnect", (reason) => {
    connected -= 1;
    disconnects += 1;
    reasons[reason] = (reasons[reason] || 0) + 1;
  });
};

const openMore = () => {
  while (inFlight < windowSize && next < tokens.length) {
    inFlight += 1;
    openOne(next);
    next += 1;
  }
};

const timer = setInterval(() => print(counts(readyAt === null ? "progress" : "status")), statusMs);

let closing = false;
const finish = () => {
  if (closing) return;
  closing = true;
  clearInterval(timer);
  print(counts("done"));
  for (const s of sockets) if (s) s.close();
  setTimeout(() => process.exit(0), 200);
};
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "close") finish();
}).on("close", finish);

if (tokens.length === 0) { readyAt = Date.now(); print(counts("ready")); }
openMore();
