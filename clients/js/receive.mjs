// A receiving user, with the official socket.io-client, as a browser would.
//
//   node receive.mjs URL TOKEN [--last-offset N] [--expect N] [--timeout-ms N] [--no-ack]
//                    [--compression]   (asks for deflate-compressed large batches)
//                    [--auth-json JSON]   (sends JSON as the whole auth object instead)
//
// Prints one JSON object per line on stdout: {"event": "connect"},
// {"event": "notifications", "batch": [...]}, {"event": "ack", "reply": {...}},
// {"event": "reload", "body": {reason, epoch, first_offset}},
// {"event": "connect_error", "message", "data"}, {"event": "error", ...},
// and finally {"event": "done", "received": N}. Exits 0 after --expect
// notifications, or at the timeout (exit 0; the caller checks the count).
import { inflateSync } from "node:zlib";
import { io } from "socket.io-client";
import { parseArgs, print } from "./cli.mjs";

const { positional: [url, token], opt, flag } = parseArgs(process.argv.slice(2), 2);
const lastOffset = opt("--last-offset");
const expect = Number(opt("--expect", "0"));
const timeoutMs = Number(opt("--timeout-ms", "10000"));
const ack = !flag("--no-ack");

let auth = { token };
if (lastOffset !== undefined) auth.last_offset = Number(lastOffset);
if (flag("--compression")) auth.compression = "deflate";
if (opt("--auth-json") !== undefined) auth = JSON.parse(opt("--auth-json"));

// With auth.compression = "deflate", a large batch arrives as binary: the
// batch's JSON, zlib-compressed. In a browser it is an ArrayBuffer:
//   const text = await new Response(new Blob([data]).stream()
//     .pipeThrough(new DecompressionStream("deflate"))).text();
// Small batches stay plain lists either way.
let compressedBatches = 0;
const decode = (data) => {
  if (Array.isArray(data)) return data;
  compressedBatches += 1;
  return JSON.parse(inflateSync(Buffer.from(data)).toString("utf8"));
};

// WebSocket only: the server does not offer HTTP long-polling.
const socket = io(url, { transports: ["websocket"], auth, reconnection: false });
let received = 0;

let finished = false;
const finish = (code) => {
  if (finished) return;
  finished = true;
  // exit once stdout has taken everything: into a pipe, a large batch's line
  // may still be on its way, and process.exit() would cut it short
  process.stdout.write(
    JSON.stringify({ event: "done", received, compressed_batches: compressedBatches }) + "\n",
    () => setTimeout(() => process.exit(code), 50),
  );
  socket.close();
};

socket.on("connect", () => print({ event: "connect" }));
socket.on("connect_error", (err) => {
  print({ event: "connect_error", message: err.message, data: err.data ?? null });
  finish(0);
});
socket.on("error", (body) => print({ event: "error", body }));
// Entries this client never received were trimmed: reload state, then carry on.
socket.on("reload", (body) => print({ event: "reload", body }));
socket.on("notifications", (data) => {
  const batch = decode(data);
  received += batch.length;
  print({ event: "notifications", batch, compressed: !Array.isArray(data) });
  if (ack) {
    const offset = batch[batch.length - 1].offset;
    socket.emit("ack", { offset }, (reply) => {
      print({ event: "ack", reply });
      if (expect && received >= expect) finish(0);
    });
  } else if (expect && received >= expect) {
    finish(0);
  }
});
socket.on("disconnect", (reason) => print({ event: "disconnect", reason }));
setTimeout(() => finish(0), timeoutMs);
