// Typed requests and responses on streams (spec §7): an operation names its code, version and
// the schemas of its request and response headers; bodies are streamed with credit.

import { Readable } from 'node:stream';
import { DfsError } from '../wire/errors.js';
import { decodeRecord, encodeRecord, type Decoded, type Schema } from '../wire/fields.js';
import type { Connection } from './connection.js';
import { WireStream } from './stream.js';

export interface Operation<Q extends Schema = Schema, R extends Schema = Schema> {
  readonly name: string;
  readonly op: number;
  readonly version: number;
  readonly request: Q;
  readonly response: R;
}

export function defineOperation<Q extends Schema, R extends Schema>(op: Operation<Q, R>): Operation<Q, R> {
  return op;
}

export type Body = Buffer | Uint8Array | Readable | AsyncIterable<Buffer | Uint8Array>;

export interface CallOptions {
  body?: Body;
  signal?: AbortSignal;
  /** Deadline for the reply header; the body is then the caller's to read or abandon. */
  timeoutMs?: number;
}

export interface CallResult<R extends Schema> {
  response: Decoded<R>;
  /** The reply body. Read it to the end or destroy it: unread bytes hold the connection's credit. */
  body: WireStream;
}

/** Sends a request and waits for its reply header. Failures reject with a DfsError carrying the spec's code. */
export async function call<Q extends Schema, R extends Schema>(
  conn: Connection, operation: Operation<Q, R>, request: Decoded<Q>, options: CallOptions = {},
): Promise<CallResult<R>> {
  const { signal, timeoutMs } = options;
  signal?.throwIfAborted();
  const header = encodeRecord(operation.request, request);
  const stream = conn.openStream(operation.op, operation.version, header, { endStream: options.body === undefined });
  // Errors surface through the reply promise or the body reader; never as an unhandled 'error'.
  stream.on('error', ignore);
  // The listener and the timer are made only when asked for: most calls have neither.
  const onAbort = signal ? () => stream.destroy(new DfsError('CANCEL', `${operation.name} was cancelled`)) : null;
  if (onAbort) signal!.addEventListener('abort', onAbort, { once: true });
  const timer = timeoutMs === undefined ? null
    : setTimeout(() => stream.destroy(new DfsError('DEADLINE_EXCEEDED', `${operation.name} got no reply within ${timeoutMs} ms`)), timeoutMs);
  if (options.body !== undefined) sendBody(stream, options.body);
  try {
    const replyHeader = await stream.waitForReply();
    return { response: decodeRecord(operation.response, replyHeader), body: stream };
  } catch (err) {
    stream.destroy();
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
    if (onAbort) signal!.removeEventListener('abort', onAbort);
  }
}

/** Calls and reads the whole reply body, refusing more than `maxBodyBytes`. */
export async function callForBuffer<Q extends Schema, R extends Schema>(
  conn: Connection, operation: Operation<Q, R>, request: Decoded<Q>, options: CallOptions & { maxBodyBytes?: number } = {},
): Promise<{ response: Decoded<R>; body: Buffer }> {
  const result = await call(conn, operation, request, options);
  const maxBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  // A small body usually arrived with its REPLY: take it without waiting on another promise.
  const body = arrivedWhole(result.body, maxBytes) ? takeWhole(result.body) : await readAll(result.body, maxBytes);
  return { response: result.response, body };
}

/** Bodies up to this size that have fully arrived already are taken in one read(), without a flowing pump. */
const WHOLE_BODY_LIMIT = 64 * 1024;

/** Whether every byte of a stream's body is already buffered and nobody has started reading it. */
function arrivedWhole(stream: Readable, maxBytes: number): stream is WireStream {
  return stream instanceof WireStream && stream.isRemoteEnded && !stream.destroyed && stream.readableFlowing === null
    && stream.listenerCount('data') === 0 && stream.listenerCount('readable') === 0 && stream.readableLength <= maxBytes;
}

/** The whole body of a stream for which arrivedWhole() holds. */
function takeWhole(stream: WireStream): Buffer {
  return (stream.read() as Buffer | null) ?? EMPTY;
}

function sendBody(stream: WireStream, body: Body): void {
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
    stream.end(Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    return;
  }
  if (body instanceof Readable && arrivedWhole(body, WHOLE_BODY_LIMIT)) {
    // A small body that is already complete (an echo, a relay of a small request): no pump needed.
    const data = takeWhole(body);
    if (data.length === 0) stream.end();
    else stream.end(data);
    return;
  }
  // A body that fails mid-way must not look like a complete one: cancel the stream.
  const fail = (err: unknown) => {
    if (!stream.destroyed) stream.destroy(err instanceof DfsError ? err : new DfsError('CANCEL', `body failed: ${(err as Error)?.message ?? String(err)}`));
  };
  if (body instanceof Readable) {
    // A hand-rolled pump rather than pipeline() (an AbortController per call) or pipe() (half a
    // dozen listeners per stream): both were measurable at tens of thousands of requests per second.
    const onData = (chunk: Buffer) => {
      if (!stream.write(chunk)) body.pause();
    };
    const onDrain = () => body.resume();
    const onEnd = () => {
      cleanup();
      stream.end();
    };
    const onError = (err: Error) => {
      cleanup();
      fail(err);
    };
    const onStreamClose = () => {
      cleanup();
      if (body !== stream && !body.readableEnded) body.destroy();
    };
    const cleanup = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      stream.off('drain', onDrain);
      stream.off('close', onStreamClose);
    };
    body.on('data', onData);
    body.once('end', onEnd);
    if (body !== stream) body.once('error', onError);
    stream.on('drain', onDrain);
    stream.once('close', onStreamClose);
    return;
  }
  void (async () => {
    try {
      for await (const chunk of body) {
        if (stream.destroyed) return;
        if (!stream.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => { stream.off('drain', done); stream.off('close', done); resolve(); };
            stream.on('drain', done);
            stream.on('close', done);
          });
        }
      }
      if (!stream.destroyed) stream.end();
    } catch (err) {
      fail(err);
    }
  })();
}

/** Reads a stream to its end into one buffer; fails with INVALID_ARGUMENT beyond `maxBytes`. */
export function readAll(stream: Readable, maxBytes: number): Promise<Buffer> {
  if (arrivedWhole(stream, maxBytes)) {
    // The usual case for a small reply: it came in the same read as its REPLY.
    return Promise.resolve(takeWhole(stream));
  }
  // Plain listeners rather than `for await`: an async iterator per body showed up in profiles.
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (err: Error | null) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (err) reject(err);
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBytes) {
        done(new DfsError('INVALID_ARGUMENT', `body exceeds ${maxBytes} bytes`));
        stream.destroy();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => done(null);
    const onError = (err: Error) => done(err);
    const onClose = () => done(new DfsError('CANCEL', 'the body was closed before its end'));
    if (stream.readableEnded) return done(null);
    if (stream.destroyed) return done((stream as { errored?: Error | null }).errored ?? new DfsError('CANCEL', 'the body was closed before its end'));
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.once('close', onClose);
  });
}

export interface RequestContext<Q extends Schema> {
  request: Decoded<Q>;
  /** The request body; empty when the request had none. */
  body: WireStream;
  /** Aborted when the caller cancels or the connection goes away. */
  signal: AbortSignal;
  connection: Connection;
}

export interface HandlerResult<R extends Schema> {
  response: Decoded<R>;
  body?: Body;
}

export type Handler<Q extends Schema, R extends Schema> = (ctx: RequestContext<Q>) => Promise<HandlerResult<R>> | HandlerResult<R>;

interface Registered {
  operation: Operation;
  handler: Handler<Schema, Schema>;
}

/** Dispatches incoming streams to handlers by operation code; errors become RESET with their code. */
export class RpcServer {
  private readonly handlers = new Map<number, Registered>();

  register<Q extends Schema, R extends Schema>(operation: Operation<Q, R>, handler: Handler<Q, R>): this {
    if (this.handlers.has(operation.op)) throw new Error(`operation 0x${operation.op.toString(16)} registered twice`);
    this.handlers.set(operation.op, { operation, handler: handler as unknown as Handler<Schema, Schema> });
    return this;
  }

  /** Serves every stream the peer opens on this connection. */
  serve(conn: Connection): void {
    conn.on('stream', (stream: WireStream) => this.dispatch(conn, stream));
  }

  private dispatch(conn: Connection, stream: WireStream): void {
    stream.on('error', ignore);
    const entry = this.handlers.get(stream.op);
    if (!entry) {
      stream.destroy(new DfsError('UNKNOWN_OPERATION', `operation 0x${stream.op.toString(16).padStart(4, '0')} is not served here`));
      return;
    }
    if (stream.opVersion !== entry.operation.version) {
      stream.destroy(new DfsError('UNSUPPORTED_OP_VERSION',
        `${entry.operation.name} version ${stream.opVersion} is not supported; this side speaks version ${entry.operation.version}`));
      return;
    }
    const call = new IncomingCall(conn, stream, entry.operation);
    let result: Promise<HandlerResult<Schema>> | HandlerResult<Schema>;
    try {
      call.request = decodeRecord(entry.operation.request, stream.header);
      result = entry.handler(call);
    } catch (err) {
      call.fail(err);
      return;
    }
    // A handler that answers at once is still answered after the current read is handled (a
    // microtask, as an async handler would be), so a small request body has arrived by then.
    // Promise.resolve rather than queueMicrotask, which makes an AsyncResource per call: on small
    // requests that showed as a tenth of the server's time.
    Promise.resolve(result).then((r) => call.finish(r), (err: unknown) => call.fail(err));
  }
}

/** One request being served: the handler's context, and what to do with its result. */
class IncomingCall implements RequestContext<Schema> {
  request: Decoded<Schema> = {};
  private controller: AbortController | null = null;
  private handlerDone = false;

  constructor(readonly connection: Connection, readonly body: WireStream, private readonly operation: Operation) {}

  /**
   * The AbortController and its 'close' listener are made only if the handler asks for the signal:
   * most requests never need it, and building them per request showed up in profiles.
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      const c = new AbortController();
      this.controller = c;
      const cancel = () => { if (!this.handlerDone) c.abort(new DfsError('CANCEL', `${this.operation.name} was cancelled by the caller`)); };
      if (this.body.destroyed) cancel();
      else this.body.once('close', cancel);
    }
    return this.controller.signal;
  }

  finish(result: HandlerResult<Schema>): void {
    this.handlerDone = true;
    const stream = this.body;
    if (stream.destroyed) return;
    try {
      const header = encodeRecord(this.operation.response, result.response);
      if (result.body === undefined) {
        stream.reply(header, { endStream: true });
        endUnreadRequest(stream);
      } else {
        stream.reply(header);
        sendBody(stream, result.body);
        // Once the request body has ended there is nothing left to refuse.
        if (!stream.isRemoteEnded) stream.once('finish', () => endUnreadRequest(stream));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  fail(err: unknown): void {
    this.handlerDone = true;
    const stream = this.body;
    if (stream.destroyed) return;
    const failure = err instanceof DfsError ? err
      : new DfsError('INTERNAL_ERROR', `${this.operation.name} failed: ${(err as Error)?.message ?? String(err)}`);
    stream.destroy(failure);
  }
}

/** The reply is complete; a request body nobody read is not wanted: say so without an error. */
function endUnreadRequest(stream: WireStream): void {
  if (!stream.isRemoteEnded && !stream.destroyed) stream.destroy(new DfsError('NO_ERROR', 'reply complete'));
}

function ignore(): void {}

const EMPTY = Buffer.alloc(0);
