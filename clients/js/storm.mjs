// Many clients connecting at once while publishes go on, from one Node
// process: the shape real traffic takes after a deploy or a node restart
// (`python -m bench storm`, and the harness-shaped run of `bench fanout`).
//
//   node storm.mjs URL TOKENS_FILE --publish-token T
//        [--connect-rate N]     connects opened per second; 0 (default): all at once
//        [--addresses K]        spread the clients over K loopback source addresses
//                               (127.1.x.y), as clients from many hosts; 0: 127.0.0.1
//        [--address-start S]    this process's first client takes address S (mod K), so
//                               several processes share one spread (default 0)
//        [--connect-timeout-ms N]  socket.io-client's own `timeout` (its default, 20000)
//        [--wait-go]            print {"event":"loaded"}, open nothing until "go" on stdin
//        [--publish after|during|external|none]
//              after:  once every client has connected (or failed), POST --broadcasts
//                      broadcasts with --in-flight at a time (the outside harness)
//              during: from the first connect on, broadcasts at --publish-rate per
//                      second until every client has settled, then --broadcasts more
//              external: another process publishes; once it is done it writes
//                      "finish FILE" on stdin, FILE holding JSON [[offset, sent_epoch_ms]...]
//                      of its answered publishes, which the clients are checked against
//        [--broadcasts N] [--in-flight N] [--publish-rate N]
//        [--timeout-ms N]       give up on deliveries after this long
//        [--quiet-ms N]         the run ends once nothing has arrived for this long
//                               after the last publish was answered
//
// Every client acks each batch, as browsers using a client library do. Each
// one checks its own stream: offsets strictly increasing (no duplicate, no
// reordering), and every broadcast whose POST was sent after the client's
// `connect` reached it (its stream began before, so it is owed). Times are
// epoch ms (Date.now), so another process's publish log compares with them.
//
// Prints {"event":"progress",...} lines while it runs (at: "settled" once
// every client has connected or failed) and, on the last line,
// {"event":"done", clients, connected, refused, refusals: {reason: count},
//  disconnects, errors: {code: n} (`error` events), connect_s, opened_at_ms,
//  settled_at_ms, connect_hist: {10 ms bucket: clients} (open to connect),
//  publish: {sent, status: {code: n}, p50_ms, p99_ms, max_ms, hist: {0.1 ms: n}}, delivered,
//  deliveries_per_s, owed, out_of_order, missing, leaked_text: [...], cpu_ms}.
// A refusal's reason is the server's error code (connect_error with data), or
// "transport: <message>" when no answer came (refused connection, timeout).
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import { parseArgs, print, readTokens } from "./cli.mjs";

const { positional: [url, tokensFile], opt, flag } = parseArgs(process.argv.slice(2), 2);
const publishToken = opt("--publish-token", "");
const connectRate = Number(opt("--connect-rate", "0"));
const addresses = Number(opt("--addresses", "0"));
const addressStart = Number(opt("--address-start", "0"));
const connectTimeoutMs = Number(opt("--connect-timeout-ms", "20000"));
const waitGo = flag("--wait-go");
const publishMode = opt("--publish", "after");
const broadcasts = Number(opt("--broadcasts", "100"));
const inFlight = Number(opt("--in-flight", "8"));
const publishRate = Number(opt("--publish-rate", "20"));
const timeoutMs = Number(opt("--timeout-ms", "120000"));
const quietMs = Number(opt("--quiet-ms", "3000"));
const tokens = readTokens(tokensFile);
const now = () => Date.now();
const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
if (!["after", "during", "external", "none"].includes(publishMode)) {
  throw new Error(`--publish must be after, during, external or none, not ${publishMode}`);
}

// What an answer or a connect_error must never carry: a Python exception's
// own words (the service answers with its own message and an error id).
const INTERNAL = /Traceback|Error\(|QueuePool|sqlalchemy|psycopg|OperationalError|Exception|File "/;
const leakedText = [];
const checkText = (where, text) => {
  if (text && INTERNAL.test(text) && leakedText.length < 10) leakedText.push(`${where}: ${text.slice(0, 300)}`);
};
const bump = (counts, key) => { counts[key] = (counts[key] ?? 0) + 1; };

// -- clients ---------------------------------------------------------------
const clients = [];
let connected = 0;
let refused = 0;
let openedAt = null;
let settledAt = null;
let lastReceipt = 0;
let delivered = 0;
let outOfOrder = 0;
let finished = false;
const refusals = {};
const disconnects = {};
const errorEvents = {};
const connectHist = {};

const sourceAddress = (i) => {
  if (!addresses) return undefined;
  const k = (addressStart + i) % addresses;
  return `127.1.${Math.floor(k / 250)}.${(k % 250) + 1}`;
};

const deferred = () => {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
};
const settle = deferred();

const onSettled = () => {
  if (settledAt === null && connected + refused === tokens.length) {
    settledAt = now();
    progress("settled");
    settle.resolve();
  }
};

const open = (i) => {
  const client = { offsets: [], openedAt: now(), connectedAt: null };
  clients.push(client);
  const socket = io(url, {
    transports: ["websocket"], auth: { token: tokens[i] }, reconnection: false,
    forceNew: true, localAddress: sourceAddress(i), timeout: connectTimeoutMs,
  });
  client.socket = socket;
  socket.on("connect", () => {
    client.connectedAt = now();
    bump(connectHist, Math.floor((client.connectedAt - client.openedAt) / 10) * 10);
    connected += 1;
    onSettled();
  });
  socket.on("connect_error", (err) => {
    // data comes with a CONNECT_ERROR packet: the server answered and refused
    bump(refusals, err.data ? (err.data.error ?? err.message) : `transport: ${err.message}`);
    checkText("connect_error", `${err.message} ${JSON.stringify(err.data ?? {})}`);
    refused += 1;
    onSettled();
  });
  socket.on("disconnect", (reason) => {
    if (!finished) bump(disconnects, reason);
  });
  socket.on("error", (data) => {
    bump(errorEvents, data?.error ?? "unknown");
    checkText("error event", JSON.stringify(data));
  });
  socket.on("notifications", (batch) => {
    lastReceipt = now();
    let last = client.offsets.at(-1) ?? 0;
    for (const n of batch) {
      if (n.offset <= last) outOfOrder += 1;
      last = n.offset;
      client.offsets.push(n.offset);
    }
    delivered += batch.length;
    socket.emit("ack", { offset: batch.at(-1).offset });
  });
};

const openAll = async () => {
  openedAt = now();
  if (tokens.length === 0) onSettled();
  for (let i = 0; i < tokens.length; i++) {
    if (connectRate) {
      const wait = openedAt + (i / connectRate) * 1000 - now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    }
    open(i);
  }
};

// -- stdin: "go", "finish FILE" --------------------------------------------
const go = deferred();
const external = deferred();
createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.trim().split(/\s+/, 2);
  if (command === "go") go.resolve();
  else if (command === "finish") external.resolve(JSON.parse(readFileSync(arg, "utf8")));
}).on("close", () => external.resolve([])); // the caller went away: nothing to check against

// -- publishing ------------------------------------------------------------
const answers = []; // {sentAt, ms, status, offset}
const statuses = {};

const publishOne = async (i) => {
  const sentAt = now();
  const t0 = performance.now(); // the answer time to a fraction of a ms
  const body = JSON.stringify({ broadcast: true, category: "storm", payload: { i, t: sentAt } });
  let status = "error";
  let offset = null;
  try {
    const response = await fetch(`${url}/api/v1/notifications`, {
      method: "POST", body,
      headers: { Authorization: `Bearer ${publishToken}`, "Content-Type": "application/json" },
    });
    status = String(response.status);
    const text = await response.text();
    checkText(`publish ${status}`, text);
    if (response.status === 202) offset = JSON.parse(text).offset ?? null;
  } catch (err) {
    status = `error: ${err.cause?.code ?? err.message}`;
  }
  bump(statuses, status);
  answers.push({ sentAt, ms: performance.now() - t0, status, offset });
};

const inParallel = async (count, width) => {
  let next = 0;
  const worker = async () => {
    while (next < count) await publishOne(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
};

const paced = async (until) => {
  const pending = new Set();
  let i = 0;
  const t0 = now();
  while (!until()) {
    const wait = t0 + (i / publishRate) * 1000 - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const p = publishOne(1_000_000 + i).finally(() => pending.delete(p));
    pending.add(p);
    i += 1;
  }
  await Promise.all(pending);
};

// -- reporting -------------------------------------------------------------
const quantile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : null);
const round = (v) => (v === null ? null : Math.round(v * 10) / 10);
let publishStartedAt = null;

function progress(event) {
  print({ event: "progress", at: event, ms: openedAt === null ? 0 : now() - openedAt, settled_at_ms: settledAt,
    connected, refused, delivered, published: answers.length });
}

// published: [[offset, sentAt epoch ms], ...] answered publishes, any order
const finish = (published) => {
  if (finished) return;
  finished = true;
  // a client is owed every broadcast whose POST left after its connect
  let owed = 0;
  let missing = 0;
  for (const client of clients) {
    if (client.connectedAt === null) continue;
    const got = new Set(client.offsets);
    for (const [offset, sentAt] of published) {
      if (sentAt <= client.connectedAt) continue;
      owed += 1;
      if (!got.has(offset)) missing += 1;
    }
  }
  const ms = answers.map((a) => a.ms).sort((a, b) => a - b);
  const span = Math.max(lastReceipt - (publishStartedAt ?? openedAt ?? 0), 1);
  print({
    event: "done",
    clients: tokens.length,
    connected,
    refused,
    refusals,
    disconnects,
    errors: errorEvents,
    connect_s: settledAt === null ? null : round((settledAt - openedAt) / 1000),
    opened_at_ms: openedAt,
    settled_at_ms: settledAt,
    connect_hist: connectHist,
    publish: {
      sent: answers.length, status: statuses,
      p50_ms: round(quantile(ms, 0.5)), p99_ms: round(quantile(ms, 0.99)), max_ms: round(ms.at(-1) ?? null),
      hist: ms.reduce((h, v) => { bump(h, round(v)); return h; }, {}), // 0.1 ms: runs pool exactly
    },
    delivered,
    deliveries_per_s: Math.round((delivered / span) * 1000),
    owed,
    out_of_order: outOfOrder,
    missing,
    leaked_text: leakedText,
    cpu_ms: Math.round(cpuMs()),
  });
  for (const client of clients) client.socket.close();
  process.stdout.write("", () => setTimeout(() => process.exit(0), 100));
};
const ownLog = () => answers.filter((a) => a.offset !== null).map((a) => [a.offset, a.sentAt]);

const ticker = setInterval(() => progress("tick"), 2000);
setTimeout(() => finish(publishMode === "external" ? [] : ownLog()), timeoutMs).unref();

const main = async () => {
  if (waitGo) {
    print({ event: "loaded", clients: tokens.length });
    await go.promise;
  }
  const opening = openAll();
  let published = [];
  if (publishMode === "during") {
    publishStartedAt = now();
    await paced(() => settledAt !== null);
    await inParallel(broadcasts, inFlight);
  } else if (publishMode === "external") {
    published = await external.promise;
  } else {
    await opening;
    await settle.promise;
    if (publishMode === "after") {
      publishStartedAt = now();
      await inParallel(broadcasts, inFlight);
    }
  }
  await opening;
  if (publishMode !== "external") published = ownLog();
  progress("published");
  // deliveries still on their way: end once the stream has been quiet a while
  const answeredAt = now();
  while (!finished) {
    await new Promise((r) => setTimeout(r, 100));
    if (now() - Math.max(lastReceipt, answeredAt) > quietMs) break;
  }
  clearInterval(ticker);
  lastReceipt = lastReceipt || now();
  finish(published);
};
main();
