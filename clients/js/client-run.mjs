// A receiving user with the official client (notify-client.mjs), in Node,
// its offset kept in a file: what tests/e2e/test_js_client.py drives.
//
//   node client-run.mjs URL (--token T | --token-file F) [--store FILE] [--key K]
//                       [--expect N] [--timeout-ms N] [--no-compression]
//                       [--jwt-secret S --sub U --expired-first] [--stall-at OFFSET]
//
// --token-file: the token function reads F on every call, and waits while F
// is missing or empty (a test holds a reconnect that way). --jwt-secret with
// --sub: the token function mints an HS256 JWT; with --expired-first the first
// one has expired already (the client must fetch another). --store FILE: a
// JSON file {key: offset}, read and written through the client's store API.
// --stall-at: the handler of that offset never finishes (prints "stalled").
//
// Prints one JSON object per line: {"event":"token","n":K},
// {"event":"connect"}, {"event":"notification","notification":{...}},
// {"event":"reload","body":{...}}, {"event":"error","body":{...}},
// {"event":"disconnect","reason"}, and at last {"event":"done","received":N,
// "last_offset","stored","stats"} after --expect notifications (the client
// closed first) or at the timeout.
import { existsSync, readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import jwt from "jsonwebtoken";
import { parseArgs, print } from "./cli.mjs";
import { connect } from "./notify-client.mjs";

const { positional: [url], opt, flag } = parseArgs(process.argv.slice(2), 1);
const expect = Number(opt("--expect", "0"));
const timeoutMs = Number(opt("--timeout-ms", "20000"));
const storeFile = opt("--store");
const key = opt("--key", "notify:last_offset");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A store of the application's own: a JSON file, asynchronous on purpose.
const fileStore = {
  async get(k) {
    if (!existsSync(storeFile)) return null;
    return JSON.parse(await readFile(storeFile, "utf8"))[k] ?? null;
  },
  async set(k, value) {
    const all = existsSync(storeFile) ? JSON.parse(await readFile(storeFile, "utf8")) : {};
    all[k] = value;
    await writeFile(storeFile, JSON.stringify(all));
  },
};

let fetches = 0;
const tokenFile = opt("--token-file");
const secret = opt("--jwt-secret");
const token = async () => {
  fetches += 1;
  print({ event: "token", n: fetches });
  if (secret !== undefined) {
    const expired = flag("--expired-first") && fetches === 1;
    const exp = Math.floor(Date.now() / 1000) + (expired ? -120 : 3600);
    return jwt.sign({ sub: opt("--sub"), exp }, secret, { algorithm: "HS256" });
  }
  for (;;) {
    const text = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "";
    if (text) return text;
    await sleep(50);
  }
};

const client = connect(url, {
  token: opt("--token") ?? token,
  store: storeFile === undefined ? undefined : fileStore,
  storageKey: key,
  compression: !flag("--no-compression"),
  socketOptions: { reconnectionDelay: 200, reconnectionDelayMax: 1000 },
});

let received = 0;
let finished = false;
const finish = async () => {
  if (finished) return;
  finished = true;
  await client.close();
  const stored = storeFile === undefined ? null : await fileStore.get(key);
  process.stdout.write(JSON.stringify({
    event: "done", received, last_offset: client.lastOffset, stored, stats: client.stats,
  }) + "\n", () => setTimeout(() => process.exit(0), 50));
};

client.on("connect", () => print({ event: "connect" }));
client.on("disconnect", (reason) => print({ event: "disconnect", reason }));
client.on("error", (body) => print({ event: "error", body }));
client.on("reload", (body) => print({ event: "reload", body }));
const stallAt = opt("--stall-at") === undefined ? null : Number(opt("--stall-at"));
client.on("notification", (notification) => {
  received += 1;
  print({ event: "notification", notification });
  if (notification.offset === stallAt) {
    print({ event: "stalled", offset: stallAt });
    return new Promise(() => {});
  }
  if (expect && received >= expect) setTimeout(finish, 0); // after this batch's ack
});
setTimeout(finish, timeoutMs);
