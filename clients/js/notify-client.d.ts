// Types of notify-client.mjs, the official JavaScript client (docs/socketio.md).
import type { ManagerOptions, Socket, SocketOptions } from "socket.io-client";

export type Priority = "low" | "normal" | "high" | "critical";

/** One entry of a user's stream, as the server sends it. */
export interface Notification<P = unknown> {
  id: string;
  /** Per user, strictly increasing: the client hands each out once, in order. */
  offset: number;
  category: string;
  priority: Priority | string;
  payload: P;
  /** ISO 8601, UTC. */
  created_at: string;
}

/** The server's `reload`: entries this client never got were trimmed away. */
export interface ReloadEvent {
  /** "trimmed" from the server; "offset_out_of_range" when the client had to start over. */
  reason: "trimmed" | "offset_out_of_range" | string;
  epoch: number | null;
  first_offset: number | null;
}

/** The server's `{error, detail, field}` (and the client's own, same shape). */
export interface NotifyError {
  /** e.g. unauthorized, connection_limit, rate_limited, invalid_input (server);
   * token_unavailable, store_failed, invalid_batch, handler_error (client). */
  error: string;
  detail: string;
  field: string | null;
  /** Seconds to wait, with storage_busy. */
  retry_after?: number;
  /** The id under which the node logged a failure of its own. */
  error_id?: string;
  /** The exception a handler threw (handler_error). */
  cause?: unknown;
  [extra: string]: unknown;
}

/** Where the last handled offset is kept between clients (page loads, processes). */
export interface OffsetStore {
  get(key: string): string | number | null | undefined
    | Promise<string | number | null | undefined>;
  /** `value` null: forget it. */
  set(key: string, value: number | null): void | Promise<void>;
}

export type TokenSource = string | (() => string | Promise<string>);

export interface NotifyClientOptions {
  /** A user token, or a function fetching a fresh one: called on every (re)connect. */
  token: TokenSource;
  /** Default: localStorage in browsers, a MemoryStore in Node. */
  store?: OffsetStore;
  /** Default "notify:last_offset"; give each user of a shared browser a key of their own. */
  storageKey?: string;
  /** Ask for deflate-compressed large batches (default true, where they can be inflated). */
  compression?: boolean;
  /** Longest wait between attempts after a refusal or a server's disconnect (default 30000). */
  maxRetryDelayMs?: number;
  /** Passed to socket.io-client (transports, autoConnect and auth are the client's own). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
}

export interface NotifyClientEvents {
  /** One per offset, in offset order; the batch is acked after every handler ran (awaited). */
  notification: (notification: Notification) => void | Promise<void>;
  /** Reload the user's state from your application; later notifications are held until it resolves. */
  reload: (event: ReloadEvent) => void | Promise<void>;
  error: (error: NotifyError) => void;
  connect: () => void;
  disconnect: (reason: string) => void;
}

export interface NotifyClientStats {
  batches: number;
  compressedBatches: number;
  notifications: number;
  duplicatesDropped: number;
  connects: number;
  tokenFetches: number;
}

export declare const DEFAULT_STORAGE_KEY: string;

export declare class MemoryStore implements OffsetStore {
  get(key: string): string | number | null;
  set(key: string, value: number | null): void;
}

export declare class WebStorageStore implements OffsetStore {
  constructor(storage?: Storage);
  get(key: string): string | null;
  set(key: string, value: number | null): void;
}

export declare function defaultStore(): OffsetStore;

/** The list inside a compressed (binary) `notifications` event. */
export declare function inflateBatch(data: ArrayBuffer | ArrayBufferView): Promise<Notification[]>;

export declare class NotifyClient {
  constructor(url: string, options: NotifyClientOptions);
  readonly url: string;
  /** The underlying socket.io-client socket (for inspection; do not emit on it). */
  readonly socket: Socket;
  readonly stats: NotifyClientStats;
  /** The last offset whose handlers have run; null before the first. */
  readonly lastOffset: number | null;
  readonly connected: boolean;
  on<E extends keyof NotifyClientEvents>(event: E, listener: NotifyClientEvents[E]): this;
  off<E extends keyof NotifyClientEvents>(event: E, listener: NotifyClientEvents[E]): this;
  once<E extends keyof NotifyClientEvents>(event: E, listener: NotifyClientEvents[E]): this;
  /** Opens the connection; `connect()` calls it for you. */
  open(): this;
  /** Closes for good, once the notifications being handled are done and stored. */
  close(): Promise<void>;
}

/** `new NotifyClient(url, options).open()`. */
export declare function connect(url: string, options: NotifyClientOptions): NotifyClient;
