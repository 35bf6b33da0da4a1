// The reference for `python -m bench fanout`: a plain socket.io 4 server that
// takes the same publishes as the service and sends each one on at once.
//
//   node peer-server.mjs PORT PUBLISH_TOKEN
//
// POST /api/v1/notifications with a broadcast body answers 202 and emits
// io.emit("notifications", [notification]) to every connected socket: one
// event per notification, no persistence, no batching, no per-user streams,
// no auth on sockets. It is the least a server must do to fan a publish out,
// so the benchmark's ratio says what our log, batching and telemetry cost or
// save against it. Acks are accepted and ignored. GET /healthz answers 200
// once listening. Prints {"event":"listening","port"} on stdout.
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { Server } from "socket.io";

const [port, publishToken] = process.argv.slice(2);
const MAX_BODY = 256 * 1024; // as the service's publish API
let offset = 0;

const reply = (res, status, body) => {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
};

const publish = (res, raw) => {
  let body;
  try {
    body = JSON.parse(raw);
  } catch {
    return reply(res, 400, { error: "malformed_request", field: "body" });
  }
  if (body?.broadcast !== true || typeof body.category !== "string") {
    return reply(res, 422, { error: "invalid_input", message: "only broadcasts", field: "broadcast" });
  }
  // The same shape as the service's entries, so the clients parse the same thing.
  const n = {
    id: randomUUID().replaceAll("-", ""),
    offset: ++offset,
    category: body.category,
    priority: body.priority ?? "normal",
    payload: body.payload ?? {},
    created_at: new Date().toISOString(),
  };
  io.emit("notifications", [n]); // encoded once, written to each socket
  // the offset as the service answers it, so clients can check what they are owed
  return reply(res, 202, { id: n.id, offset: n.offset, created_at: n.created_at, recipients: io.engine.clientsCount });
};

const http = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { status: "ok" });
  if (req.method !== "POST" || req.url !== "/api/v1/notifications") {
    return reply(res, 404, { error: "not_found" });
  }
  if (req.headers.authorization !== `Bearer ${publishToken}`) {
    return reply(res, 401, { error: "unauthorized", field: "Authorization" });
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (size > MAX_BODY) return reply(res, 413, { error: "payload_too_large", field: "body" });
    return publish(res, Buffer.concat(chunks).toString("utf8"));
  });
});

// Publishers keep their connections between paced publishes; with Node's 5 s
// default, the server closes an idle one just as a publisher reuses it
// (ECONNRESET), which gevent's server, holding them open, never does.
http.keepAliveTimeout = 120_000;
http.headersTimeout = 121_000;

// WebSocket only and no compression, as the service runs.
const io = new Server(http, { transports: ["websocket"], serveClient: false, perMessageDeflate: false });
io.on("connection", (socket) => socket.on("ack", () => {}));
http.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ event: "listening", port: Number(port) }) + "\n");
});
process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});
