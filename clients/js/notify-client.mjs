// The official JavaScript client of the notification service, for browsers
// and Node. It wraps socket.io-client and keeps the protocol's promises for
// the application (docs/socketio.md, "JavaScript client"):
//
//   import { connect } from "notify-service-client";
//   const client = connect("https://notify.example.com", {
//     token: async () => (await fetch("/my-backend/notify-token")).text(),
//   });
//   client.on("notification", (n) => render(n));      // once per offset, in order
//   client.on("reload", () => reloadStateFromMyApp());  // entries were trimmed away
//   client.on("error", ({ error, detail, field }) => console.warn(error, detail));
//   // later: await client.close();
//
// - the token (a string, or a function returning one or a Promise of one) is
//   asked for again on every (re)connect, so an expired token is replaced;
// - every (re)connect sends `last_offset`, the last offset this client
//   received, so the server replays exactly what was missed; the offset the
//   application's handlers have run for is kept in a store (localStorage in
//   browsers, memory in Node, or any `{get(key), set(key, value)}`) and used
//   when a new client starts;
// - a batch is acknowledged (`ack`) once the handlers of all its
//   notifications have run (awaited, when they return a Promise);
// - compressed (binary) batches are inflated: DecompressionStream in
//   browsers, zlib in Node;
// - an offset is never handed to the application twice, nor out of order,
//   across reconnects and restarts of the server.
import { io } from "socket.io-client";

export const DEFAULT_STORAGE_KEY = "notify:last_offset";

const isNode = typeof process !== "undefined" && process?.versions?.node != null
  && typeof window === "undefined";

/** A store that forgets when the process ends: the default in Node. */
export class MemoryStore {
  constructor() {
    this.values = new Map();
  }

  get(key) {
    return this.values.has(key) ? this.values.get(key) : null;
  }

  set(key, value) {
    this.values.set(key, value);
  }
}

/** window.localStorage (or any Web Storage) as a store: the default in browsers. */
export class WebStorageStore {
  constructor(storage = globalThis.localStorage) {
    this.storage = storage;
  }

  get(key) {
    return this.storage.getItem(key);
  }

  set(key, value) {
    if (value === null || value === undefined) this.storage.removeItem(key);
    else this.storage.setItem(key, String(value));
  }
}

/** localStorage when the page may use it, else memory (Node, or storage disabled). */
export function defaultStore() {
  if (!isNode) {
    try {
      const storage = globalThis.localStorage;
      if (storage) {
        const probe = `${DEFAULT_STORAGE_KEY}:probe`;
        storage.setItem(probe, "1");
        storage.removeItem(probe);
        return new WebStorageStore(storage);
      }
    } catch {
      // storage disabled (a sandboxed frame, a privacy setting): memory it is
    }
  }
  return new MemoryStore();
}

const parseOffset = (value) => {
  if (value === null || value === undefined || value === "") return null;
  const offset = typeof value === "number" ? value : Number(value);
  return Number.isSafeInteger(offset) && offset >= 0 ? offset : null;
};

let zlibInflate = null;

/** The batch inside a compressed `notifications` event: zlib (RFC 1950) JSON. */
export async function inflateBatch(data) {
  if (isNode) {
    zlibInflate ??= import(/* webpackIgnore: true */ /* @vite-ignore */ "node:zlib")
      .then((zlib) => (bytes) => new Promise((resolve, reject) => {
        zlib.inflate(bytes, (err, out) => (err ? reject(err) : resolve(out)));
      }));
    const bytes = ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);
    return JSON.parse((await (await zlibInflate)(bytes)).toString("utf8"));
  }
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  return JSON.parse(await new Response(stream).text());
}

const canInflate = () => isNode || typeof DecompressionStream === "function";

const isBinary = (data) => data instanceof ArrayBuffer || ArrayBuffer.isView(data)
  || (typeof Blob !== "undefined" && data instanceof Blob);

export class NotifyClient {
  /**
   * @param {string} url the node's base URL (http(s)://host:port)
   * @param {object} options see notify-client.d.ts
   */
  constructor(url, options = {}) {
    if (typeof url !== "string" || !url) throw new TypeError("url must be the node's URL");
    const { token } = options;
    if (typeof token !== "function" && (typeof token !== "string" || !token)) {
      throw new TypeError("options.token must be a token, or a function that returns one "
        + "(or a Promise of one)");
    }
    this.url = url;
    this._token = token;
    this._store = options.store ?? defaultStore();
    this._key = options.storageKey ?? DEFAULT_STORAGE_KEY;
    this._compression = (options.compression ?? true) && canInflate();
    this._maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
    this._listeners = new Map();
    this._received = null; // highest offset taken from the server, queued for the handlers
    this._delivered = null; // highest offset whose handlers have run (what the store holds)
    this._loading = null; // the stored offset, read once
    this._decoding = Promise.resolve(); // batches decoded one at a time, in arrival order
    this._delivering = Promise.resolve(); // and handed to the handlers one at a time
    this._authAttempt = 0;
    this._retries = 0;
    this._retryTimer = null;
    this._closed = false;
    this.stats = { batches: 0, compressedBatches: 0, notifications: 0, duplicatesDropped: 0,
      connects: 0, tokenFetches: 0 };
    this.socket = io(url, {
      reconnectionDelayMax: 10_000,
      ...options.socketOptions,
      transports: ["websocket"], // the server offers no long-polling
      autoConnect: false,
      forceNew: true,
      auth: (send) => this._auth(send),
    });
    this._wire();
  }

  /** The last offset the handlers have run for (null before the first). */
  get lastOffset() {
    return this._delivered;
  }

  get connected() {
    return this.socket.connected;
  }

  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return this;
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
    return this;
  }

  once(event, listener) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      return listener(...args);
    };
    return this.on(event, wrapped);
  }

  /** Opens the connection (connect() does this for you). */
  open() {
    if (this._closed) throw new Error("this client was closed; make a new one");
    this._loadStored();
    this.socket.connect();
    return this;
  }

  /**
   * Closes the connection for good. Resolves once the notifications already
   * being handled are done and their offset stored; those not yet started
   * are not handed out (a new client gets them again: the store has not
   * moved past them).
   */
  async close() {
    if (!this._closed) {
      this._closed = true; // no notification is handed out from here on
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      this._authAttempt += 1; // a token still being fetched is not sent
      try {
        await this._delivering; // the batch being handled is stored and acked
      } finally {
        this.socket.close();
      }
    }
    await this._delivering;
  }

  // ---- connecting --------------------------------------------------------

  _loadStored() {
    this._loading ??= (async () => {
      let stored = null;
      try {
        stored = parseOffset(await this._store.get(this._key));
      } catch (err) {
        this._report("store_failed", `reading the stored offset failed: ${describe(err)}`, "store");
      }
      if (stored !== null && this._received === null) {
        this._received = stored;
        this._delivered = stored;
      }
    })();
    return this._loading;
  }

  /** socket.io-client calls this for every connection attempt, reconnects included. */
  _auth(send) {
    const attempt = ++this._authAttempt;
    const engine = this.socket.io.engine;
    const stale = () => this._closed || attempt !== this._authAttempt
      || this.socket.io.engine !== engine;
    (async () => {
      for (let failures = 0; ; failures += 1) {
        try {
          const token = await this._fetchToken();
          if (stale()) return;
          await this._loadStored();
          await this._decoding; // every batch received so far counts in _received
          if (stale()) return;
          const auth = { token };
          if (this._received !== null) auth.last_offset = this._received;
          if (this._compression) auth.compression = "deflate";
          send(auth);
          return;
        } catch (err) {
          if (stale()) return;
          this._report("token_unavailable", `the token function failed: ${describe(err)}`,
            "token");
          await sleep(this._delay(failures));
          if (stale()) return;
        }
      }
    })();
  }

  async _fetchToken() {
    this.stats.tokenFetches += 1;
    const token = typeof this._token === "function" ? await this._token() : this._token;
    if (typeof token !== "string" || !token) {
      throw new TypeError("it returned no token (a non-empty string is needed)");
    }
    return token;
  }

  _wire() {
    const s = this.socket;
    s.on("connect", () => {
      this._retries = 0;
      this.stats.connects += 1;
      this._emitNow("connect");
    });
    s.on("disconnect", (reason) => {
      this._emitNow("disconnect", reason);
      // the server closed it (idle, too slow a reader, its own shutdown):
      // socket.io-client does not come back by itself after that, we do
      if (reason === "io server disconnect") this._retryLater();
    });
    s.on("connect_error", (err) => this._refused(err));
    // socket.id names the connection: a batch's ack goes back on the one that sent it
    s.on("notifications", (data) => this._batch(data, this.socket.id));
    s.on("reload", (body) => this._reload(body));
    s.on("error", (body) => this._emitNow("error", body));
  }

  _refused(err) {
    const data = err?.data;
    if (!data || typeof data !== "object" || typeof data.error !== "string") {
      // the node could not be reached: socket.io-client tries again by itself
      if (!this.socket.active) this._retryLater();
      return;
    }
    this._emitNow("error", data);
    if (this._closed) return;
    switch (data.error) {
      case "offset_out_of_range":
        // the log ends before what this client has seen (the node's database
        // was replaced): start over from the server's acknowledged offset,
        // after telling the application to reload its state
        this._startOver();
        return;
      case "invalid_input":
        if (data.field === "compression" && this._compression) {
          this._compression = false; // an older node: take plain batches
          this._retryLater(0);
          return;
        }
        this._closeAfterRefusal();
        return;
      case "unauthorized":
        if (typeof this._token !== "function") {
          this._closeAfterRefusal(); // the same token would be refused again
          return;
        }
        this._retryLater();
        return;
      default: {
        const after = Number(data.retry_after);
        this._retryLater(Number.isFinite(after) && after > 0 ? after * 1000 : undefined);
      }
    }
  }

  _closeAfterRefusal() {
    this.close().catch(() => {});
  }

  _startOver() {
    this._decoding = this._decoding.then(() => {
      this._received = null;
    });
    this._enqueueDelivery(async () => {
      this._delivered = null;
      await this._persist(null);
      await this._dispatch("reload", { reason: "offset_out_of_range", epoch: null,
        first_offset: null });
    });
    this._retryLater(0);
  }

  _delay(failures) {
    const base = Math.min(this._maxRetryDelayMs, 1000 * 2 ** Math.min(failures, 16));
    return base / 2 + Math.random() * base / 2;
  }

  _retryLater(delayMs) {
    if (this._closed || this._retryTimer !== null) return;
    const wait = delayMs ?? this._delay(this._retries);
    this._retries += 1;
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._closed && !this.socket.active) this.socket.connect();
    }, wait);
  }

  // ---- receiving ----------------------------------------------------------

  _batch(data, connection) {
    this.stats.batches += 1;
    const compressed = !Array.isArray(data);
    const decoded = this._decoding.then(async () => {
      let batch = data;
      if (compressed) {
        if (!isBinary(data)) throw new TypeError("a notifications event that is neither a list nor binary");
        batch = await inflateBatch(data);
        this.stats.compressedBatches += 1;
      }
      if (!Array.isArray(batch)) throw new TypeError("a compressed batch that is not a list");
      const fresh = [];
      let last = null;
      for (const item of batch) {
        const offset = item?.offset;
        if (!Number.isSafeInteger(offset)) continue;
        last = offset;
        if (this._received !== null && offset <= this._received) {
          this.stats.duplicatesDropped += 1; // a replay of what this client already has
          continue;
        }
        this._received = offset;
        fresh.push(item);
      }
      return { fresh, last };
    });
    this._decoding = decoded.then(() => {}, (err) => {
      this._report("invalid_batch", `a notifications batch could not be read: ${describe(err)}`,
        "notifications");
    });
    this._enqueueDelivery(async () => {
      let batch;
      try {
        batch = await decoded;
      } catch {
        return; // reported above
      }
      await this._deliver(batch, connection);
    });
  }

  async _deliver({ fresh, last }, connection) {
    let delivered = 0;
    for (const item of fresh) {
      if (this._closed) break;
      await this._dispatch("notification", item);
      this._delivered = item.offset;
      this.stats.notifications += 1;
      delivered += 1;
    }
    if (delivered) await this._persist(this._delivered);
    // once the whole batch was handled; cumulative; and only on the connection
    // that sent it: another would refuse an offset it never sent (the next
    // batch's ack covers it, and the next connection starts from last_offset)
    if (delivered === fresh.length && last !== null && this._delivered !== null
        && last <= this._delivered && connection === this.socket.id && this.socket.connected) {
      this.socket.emit("ack", { offset: last });
    }
  }

  _reload(body) {
    // in order with the batches: what came before is handed out first, and
    // what follows (from first_offset) only once the reload handlers are done
    const ready = this._decoding;
    this._enqueueDelivery(async () => {
      await ready;
      if (!this._closed) await this._dispatch("reload", body);
    });
  }

  async _persist(offset) {
    try {
      await this._store.set(this._key, offset);
    } catch (err) {
      this._report("store_failed", `storing the offset failed: ${describe(err)}`, "store");
    }
  }

  _enqueueDelivery(step) {
    this._delivering = this._delivering.then(step).catch((err) => {
      this._report("internal_error", describe(err), null);
    });
  }

  // ---- events -------------------------------------------------------------

  /** Calls the listeners one by one, awaiting those that return a Promise. */
  async _dispatch(event, payload) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) {
      try {
        await listener(payload);
      } catch (err) {
        this._report("handler_error", `a ${event} handler threw: ${describe(err)}`, event, err);
      }
    }
  }

  /** Calls the listeners now; what they return is not awaited. */
  _emitNow(event, ...args) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) {
      try {
        const result = listener(...args);
        result?.catch?.((err) => this._handlerFailed(event, err));
      } catch (err) {
        this._handlerFailed(event, err);
      }
    }
  }

  _handlerFailed(event, err) {
    if (event === "error") console.error("notify client: an error handler threw", err);
    else this._report("handler_error", `a ${event} handler threw: ${describe(err)}`, event, err);
  }

  _report(error, detail, field, cause) {
    const body = { error, detail, field };
    if (cause !== undefined) body.cause = cause;
    if (this._listeners.get("error")?.size) this._emitNow("error", body);
    else console.error(`notify client: ${error}: ${detail}`);
  }
}

/** A client, connecting at once: `connect(url, {token})`. */
export function connect(url, options) {
  return new NotifyClient(url, options).open();
}

function describe(err) {
  return err instanceof Error ? err.message : String(err);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
