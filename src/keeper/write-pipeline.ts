// WRITE_CHUNK: store a chunk here and forward the same bytes, as they arrive, to the next keeper of
// the pipeline; reply with one acknowledgement per hop, in pipeline order, once the local replica is
// durable and the next keeper has answered or failed.
//
// Memory per hop is bounded by the windows, never by the chunk: the upstream body is read only as
// fast as both sinks take it. A downstream write() that returns false stops reading until 'drain';
// a local write that the worker session has not yet taken does too.

import { decodeRecord, encodeRecord, type Decoded } from '../wire/fields.js';
import { DfsError, type ErrorCode } from '../wire/errors.js';
import type { Handler, WireStream } from '../transport/index.js';
import { HOP_ACK, WRITE_CHUNK } from '../protocol/ops.js';
import type { ChunkStore, ChunkWriter } from './chunk-store.js';
import type { PeerPool } from './peer-pool.js';
import type { DamagedReplicas } from './damaged-replicas.js';

export type HopAck = Decoded<typeof HOP_ACK>;
type WriteRequest = Decoded<typeof WRITE_CHUNK.request>;
type WriteResponse = Decoded<typeof WRITE_CHUNK.response>;

/** Default time a hop may go without progress (bytes from upstream, drain from downstream). */
export const DEFAULT_STALL_MS = 30_000;

export interface WritePipelineOptions {
  store: ChunkStore;
  peers: PeerPool;
  /** This keeper as its acknowledgements name it. */
  self: () => { keeperId: string; address: string };
  /** A hop that moves no bytes for this long fails with DEADLINE_EXCEEDED. Default 30 s. */
  stallMs?: number;
  /** Counts writes in flight, for the heartbeat's load. */
  onActive?: (delta: 1 | -1) => void;
  /** Where a held replica found damaged on a rewrite goes. Default: it is quarantined, not reported. */
  damaged?: DamagedReplicas;
  /** Told of every chunk about to be written here, before any byte lands. */
  onWrite?: (chunkId: string) => void;
}

export function writeChunkHandler(opts: WritePipelineOptions): Handler<typeof WRITE_CHUNK.request, typeof WRITE_CHUNK.response> {
  const stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
  return async ({ request, body }) => {
    opts.onActive?.(1);
    try {
      return { response: await runWrite(opts, stallMs, request, body) };
    } finally {
      opts.onActive?.(-1);
    }
  };
}

async function runWrite(opts: WritePipelineOptions, stallMs: number, request: WriteRequest, body: WireStream): Promise<WriteResponse> {
  const { chunkId, size, downstream } = request;
  opts.onWrite?.(chunkId);
  const local = new LocalReplica(opts.store, request, opts.damaged);
  const forward = downstream.length > 0 ? new Forwarder(opts.peers, request, stallMs) : null;
  // Both sinks must be ready before the first byte is read: nothing is buffered for a late one.
  await Promise.all([local.open(), forward?.open()]);

  const watchdog = new StallWatchdog(stallMs, () => {
    body.destroy(new DfsError('DEADLINE_EXCEEDED', `chunk ${chunkId}: no bytes from upstream for ${stallMs} ms`));
  });
  let received = 0;
  try {
    await pump(body, (piece) => {
      watchdog.resume(); // bytes arrived: the upstream is alive
      received += piece.length;
      if (received > size) {
        // The body is not the chunk it claims to be: stop here rather than read an unbounded body.
        const err = new DfsError('CHECKSUM_MISMATCH', `chunk ${chunkId}: body exceeds the declared ${size} bytes`);
        local.fail(err);
        forward?.abort(err, 'not written: the body exceeded the declared size');
        return 'stop';
      }
      const down = forward?.write(piece) ?? null;
      const disk = local.write(piece);
      if (!down && !disk) return null;
      watchdog.pause();
      return (down && disk ? Promise.all([down, disk]) : (down ?? disk)!).then(() => watchdog.resume());
    });
  } catch (err) {
    // The body itself broke (upstream reset or stalled): nothing here may look complete.
    const failure = asDfsError(err, 'CANCEL');
    forward?.abort(failure, `not written: ${failure.message}`);
    await local.abort();
    throw failure;
  } finally {
    watchdog.stop();
  }

  forward?.end();
  const [self, rest] = await Promise.all([local.commit(), forward ? forward.acks() : Promise.resolve([])]);
  const me = opts.self();
  return { acks: [{ keeperId: me.keeperId, address: me.address, ...self }, ...rest] };
}

type Outcome = { status: ErrorCode; message?: string };

/**
 * Feeds a request body to `onPiece` in flowing mode, one frame's payload at a time (a paused
 * stream's read() would concatenate what is buffered: a copy of every byte), and pauses while the
 * promise `onPiece` returns is pending. Resolves at the end of the body once the last promise
 * settled, or at once when `onPiece` says 'stop'; rejects when the body breaks.
 */
function pump(body: WireStream, onPiece: (piece: Buffer) => Promise<unknown> | null | 'stop'): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let pending: Promise<unknown> | null = null;
    const finish = (err?: unknown) => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onData = (piece: Buffer) => {
      const next = onPiece(piece);
      if (next === null) return;
      body.pause();
      if (next === 'stop') return finish();
      const current = next.then(() => {
        if (pending === current) pending = null;
        if (!settled) body.resume();
      }, finish);
      pending = current;
    };
    // 'end' can come while the last piece is still being taken: finish after it.
    const onEnd = () => void (pending ?? Promise.resolve()).then(() => finish());
    const onError = (err: Error) => finish(err);
    const onClose = () => {
      if (!body.readableEnded) finish(new DfsError('CANCEL', 'the request body was closed before its end'));
    };
    // The upstream may have reset while the sinks were being opened: its 'error' has been and gone.
    if (body.destroyed) {
      reject(body.errored ?? new DfsError('CANCEL', 'the request body was closed before its end'));
      return;
    }
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    body.once('close', onClose);
  });
}

function asDfsError(err: unknown, fallback: ErrorCode): DfsError {
  if (err instanceof DfsError) return err;
  return new DfsError(fallback, (err as Error)?.message ?? String(err));
}

/**
 * The replica on this keeper: pieces go to a chunk-store writer, whose worker session batches them
 * and resolves a write once it has taken the bytes, so awaiting each write bounds what is queued.
 * Records the first failure; after it, pieces are dropped and the outcome is that failure.
 */
class LocalReplica {
  private writer: ChunkWriter | null = null;
  private failure: DfsError | null = null;
  private last: Promise<void> = Promise.resolve();

  constructor(private readonly store: ChunkStore, private readonly request: WriteRequest, private readonly damaged?: DamagedReplicas) {}

  async open(): Promise<void> {
    try {
      await this.checkHeld();
      this.writer = await this.store.createWriter(this.request.chunkId, this.request.size, this.request.sha256);
    } catch (err) {
      this.failure = asDfsError(err, 'INTERNAL_ERROR');
    }
  }

  /**
   * A chunk already held with the same size and SHA-256 is acknowledged as durable without taking
   * the bytes again (a retried pipeline, a repeated COPY), but only if it still verifies: a damaged
   * one is quarantined here, and the bytes on their way replace it.
   */
  private async checkHeld(): Promise<void> {
    const { chunkId, size, sha256 } = this.request;
    const held = this.store.stat(chunkId);
    if (held === undefined || held.size !== size || held.sha256 !== sha256) return;
    try {
      await this.store.verify(chunkId);
    } catch (err) {
      if (!(err instanceof DfsError) || err.code !== 'CHECKSUM_MISMATCH') throw err;
      if (this.damaged) await this.damaged.quarantine(chunkId, 'rewrite', err);
      else await this.store.quarantine(chunkId);
    }
  }

  /** Hands a piece to the writer; the promise settles once it is taken and never rejects. */
  write(piece: Buffer): Promise<void> | null {
    if (this.failure || !this.writer) return null;
    // Copied, never moved: the same piece may still be queued on the downstream stream.
    this.last = this.writer.write(piece).catch((err: unknown) => {
      this.failure ??= asDfsError(err, 'IO_ERROR');
    });
    return this.last;
  }

  fail(err: DfsError): void {
    this.failure ??= err;
  }

  /** Makes the replica durable; the outcome becomes this hop's acknowledgement. */
  async commit(): Promise<Outcome> {
    await this.last;
    if (!this.failure && this.writer) {
      try {
        await this.writer.commit();
        return { status: 'NO_ERROR' };
      } catch (err) {
        this.failure = asDfsError(err, 'IO_ERROR');
      }
    }
    await this.writer?.abort();
    const failure = this.failure ?? new DfsError('INTERNAL_ERROR', 'no writer');
    return { status: failure.code, message: failure.message };
  }

  async abort(): Promise<void> {
    await this.last;
    await this.writer?.abort();
  }
}

/**
 * The stream to the next keeper. It never throws into the pipeline: a failure is recorded and turned
 * into acknowledgements naming the hop that failed, so this hop still succeeds locally.
 */
export class Forwarder {
  private stream: WireStream | null = null;
  private reply: Promise<WriteResponse> | null = null;
  /** Why the next keeper failed, and what that means for the hops after it. */
  private failure: { code: ErrorCode; message: string; rest: string } | null = null;
  private readonly hops: string[];
  /** The next keeper's id, from the agent in its HELLO, so even its failure is named by id. */
  private nextId = '';

  constructor(private readonly peers: PeerPool, private readonly request: WriteRequest, private readonly stallMs: number) {
    this.hops = request.downstream;
  }

  private get next(): string {
    return this.hops[0]!;
  }

  /** True once the next keeper failed or was given up on: further pieces are dropped. */
  get failed(): boolean {
    return this.failure !== null;
  }

  async open(): Promise<void> {
    try {
      const conn = await this.peers.get(this.next);
      this.nextId = keeperIdFromAgent(conn.peerAgent);
      const header = encodeRecord(WRITE_CHUNK.request, { ...this.request, downstream: this.hops.slice(1) });
      const stream = conn.openStream(WRITE_CHUNK.op, WRITE_CHUNK.version, header);
      stream.on('error', () => {});
      this.stream = stream;
      this.reply = stream.waitForReply().then((h) => {
        // The reply has no body; consume its end so the stream can finish.
        stream.resume();
        return decodeRecord(WRITE_CHUNK.response, h);
      });
      this.reply.catch(() => {});
    } catch (err) {
      const e = asDfsError(err, 'UNAVAILABLE');
      this.failure = { code: e.code, message: `cannot reach keeper ${this.next}: ${e.message}`, rest: `not reached: keeper ${this.next} before it could not be reached` };
    }
  }

  /** Sends a piece; returns a promise to await when the stream is full. Never rejects. */
  write(piece: Buffer): Promise<void> | null {
    const stream = this.stream;
    if (this.failure || !stream || stream.destroyed) return null;
    if (stream.write(piece)) return null;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stream.off('drain', done);
        stream.off('close', done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.abort(new DfsError('DEADLINE_EXCEEDED', `keeper ${this.next} took no bytes for ${this.stallMs} ms`),
          `outcome unknown: keeper ${this.next} before it stalled`);
        done();
      }, this.stallMs);
      stream.once('drain', done);
      stream.once('close', done);
    });
  }

  end(): void {
    if (!this.failure && this.stream && !this.stream.destroyed) this.stream.end();
  }

  /** Gives up on the downstream: resets its stream with the error's code. */
  abort(err: DfsError, rest: string): void {
    this.failure ??= { code: err.code, message: err.message, rest };
    if (this.stream && !this.stream.destroyed) this.stream.destroy(err);
  }

  /** One acknowledgement per downstream hop: the next keeper's reply, or what is known of its failure. */
  async acks(): Promise<HopAck[]> {
    if (!this.failure && this.reply) {
      // Each hop waits for the one after it, so the wait grows with the hops still ahead.
      const deadline = this.stallMs * this.hops.length;
      let timer: NodeJS.Timeout | undefined;
      try {
        const reply = await Promise.race([
          this.reply,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new DfsError('DEADLINE_EXCEEDED', `no reply within ${deadline} ms`)), deadline);
          }),
        ]);
        return this.normalise(reply.acks);
      } catch (err) {
        const e = asDfsError(err, 'INTERNAL_ERROR');
        this.stream?.destroy(e);
        this.failure = { code: e.code, message: `keeper ${this.next} failed: ${e.message}`, rest: `outcome unknown: keeper ${this.next} before it failed` };
      } finally {
        clearTimeout(timer);
      }
    }
    const f = this.failure!;
    return this.hops.map((address, i) => i === 0
      ? { keeperId: this.nextId, address, status: f.code, message: f.message }
      : { keeperId: '', address, status: 'PIPELINE_FAILED', message: f.rest });
  }

  /** A downstream that answered with too few or too many acks still yields one per requested hop. */
  private normalise(acks: HopAck[]): HopAck[] {
    return this.hops.map((address, i) => acks[i] ?? {
      keeperId: '', address, status: 'PIPELINE_FAILED', message: `keeper ${this.next} gave no acknowledgement for this hop`,
    });
  }
}

/** Keepers announce themselves in HELLO as `dfs-keeper <id>`; '' for any other agent. */
export function keeperAgent(id: string): string {
  return `dfs-keeper ${id}`;
}

function keeperIdFromAgent(agent: string): string {
  const m = /^dfs-keeper ([0-9a-f]{32})$/.exec(agent);
  return m ? m[1]! : '';
}

/** Fires when upstream bytes stop arriving for `ms`; paused while this hop waits on its own sinks. */
class StallWatchdog {
  private timer: NodeJS.Timeout | null = null;
  private last = Date.now();
  private waiting = true;

  constructor(ms: number, onStall: () => void) {
    this.timer = setInterval(() => {
      if (this.waiting && Date.now() - this.last >= ms) {
        this.stop();
        onStall();
      }
    }, Math.max(10, Math.floor(ms / 4)));
    this.timer.unref?.();
  }

  pause(): void {
    this.waiting = false;
  }

  resume(): void {
    this.waiting = true;
    this.last = Date.now();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
