// One multiplexed stream (spec §7): a node Duplex whose writes are paced by the peer's credit
// and whose reads return credit as the application consumes them.

import { Duplex } from 'node:stream';
import { DfsError, type ErrorCode } from '../wire/errors.js';

/** What a stream needs from its connection; the connection implements it. */
export interface StreamHost {
  /** Called when the stream has bytes or an end to send. */
  markSendable(stream: WireStream): void;
  /** Bytes the application consumed; returned to the peer as connection credit. */
  consumed(bytes: number): void;
  /** Sends CREDIT for this stream. */
  sendStreamCredit(stream: WireStream, increment: number): void;
  /** Extra receive window for a stream whose window is `current` bytes: 0, or what the connection could grow it by. */
  growWindow(stream: WireStream, current: number): number;
  /** Sends REPLY on a stream the peer opened. */
  sendReply(stream: WireStream, header: Buffer, endStream: boolean): void;
  /** Sends RESET and forgets the stream. */
  resetStream(stream: WireStream, code: ErrorCode, reason: string): void;
  /** The stream finished in both directions. */
  streamDone(stream: WireStream): void;
}

export type StreamState = 'pending' | 'open' | 'half-closed-local' | 'half-closed-remote' | 'closed';

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  /** Null once the write was acknowledged early, because it fit in credit already granted. */
  callback: ((err?: Error | null) => void) | null;
}

export class WireStream extends Duplex {
  /** Stream id; 0 until the OPEN is actually sent (ids are assigned in send order). */
  id = 0;
  state: StreamState = 'pending';
  /** Whether this side opened the stream. */
  readonly local: boolean;
  /** The operation named by OPEN. */
  readonly op: number;
  readonly opVersion: number;
  /** Encoded header fields of the OPEN. */
  readonly header: Buffer;

  // Sending: bounded by the peer's credit. A write that fits in the credit not yet spoken for is
  // acknowledged at once (so end() can ride on the same DATA frame); a larger one is acknowledged
  // once sent. Either way what waits here is at most the window plus one chunk.
  sendWindow: number;
  /** The largest sendWindow has been; CREDIT that stays within it gives back credit for DATA sent. */
  sendWindowHigh: number;
  sentBytes = 0;
  private readonly queue: PendingWrite[] = [];
  /** Bytes in `queue` not yet sent. */
  private queuedBytes = 0;
  private endRequested = false;
  private endSent = false;
  /** Set once END_STREAM or RESET left, so nothing more is sent. */
  private sendClosed = false;

  // Receiving: bounded by the credit this side granted.
  recvWindow: number;
  receivedBytes = 0;
  /** The receive window: the announced STREAM_WINDOW, grown while the reader keeps up (spec §7.5). */
  private windowSize: number;
  private grantAt: number;
  /** Bytes of windowSize beyond the announced setting; the connection takes them back when the stream ends. */
  grownBytes = 0;
  /** receivedBytes when the window last grew, or when the reader last fell behind. */
  private receivedAtGrowth = 0;
  /** The most bytes that waited unread since the last grant: how far the reader fell behind. */
  private unreadPeak = 0;
  private pushedBytes = 0;
  /** Consumed bytes returned to the peer as stream credit. */
  private creditedBytes = 0;
  /** Consumed bytes reported to the connection, for its own window. */
  private reportedBytes = 0;
  private remoteEnded = false;

  /** REPLY state, for streams this side opened. */
  replyHeader: Buffer | null = null;
  /** Whether this side sent REPLY (for streams the peer opened). */
  replied = false;
  /** What waitForReply() hands out, made on its first call; every caller shares it. */
  private replyPromise: Promise<Buffer> | null = null;
  private resolveReply: ((h: Buffer) => void) | null = null;
  private rejectReply: ((e: Error) => void) | null = null;
  private closeError: Error | null = null;

  constructor(
    private readonly host: StreamHost,
    init: { local: boolean; op: number; opVersion: number; header: Buffer; sendWindow: number; recvWindow: number; highWaterMark?: number },
  ) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: init.recvWindow,
      writableHighWaterMark: init.highWaterMark ?? 64 * 1024,
    });
    this.local = init.local;
    this.op = init.op;
    this.opVersion = init.opVersion;
    this.header = init.header;
    this.sendWindow = this.sendWindowHigh = init.sendWindow;
    this.recvWindow = this.windowSize = init.recvWindow;
    this.grantAt = Math.max(1, Math.floor(init.recvWindow / 2));
  }

  /** Set when END_STREAM rides on the OPEN or REPLY frame itself instead of a DATA frame. */
  endOnOpen = false;
  /** Whether the stream is in its connection's queue of streams with something to send. */
  inSendable = false;

  /** Answers a stream the peer opened; with `endStream` the reply has no body. */
  reply(header: Buffer, options: { endStream?: boolean } = {}): void {
    this.host.sendReply(this, header, options.endStream ?? false);
  }

  /** Resolves with the REPLY header, or rejects with the error that ended the stream first. */
  waitForReply(): Promise<Buffer> {
    if (this.replyHeader) return Promise.resolve(this.replyHeader);
    if (this.closeError) return Promise.reject(this.closeError);
    this.replyPromise ??= new Promise((resolve, reject) => {
      this.resolveReply = resolve;
      this.rejectReply = reject;
    });
    return this.replyPromise;
  }

  // ---- Writable side ----

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.sendClosed) {
      // Data written after a NO_ERROR reset is dropped: the peer said it needs no more.
      callback(this.destroyed ? this.closeError : null);
      return;
    }
    if (chunk.length === 0) {
      callback();
      return;
    }
    const early = this.state !== 'pending' && chunk.length <= this.sendWindow - this.queuedBytes;
    this.queue.push({ chunk, offset: 0, callback: early ? null : callback });
    this.queuedBytes += chunk.length;
    if (early) process.nextTick(callback);
    this.host.markSendable(this);
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.sendClosed) {
      callback();
      return;
    }
    this.endRequested = true;
    this.finalCallback = callback;
    this.host.markSendable(this);
  }
  private finalCallback: ((err?: Error | null) => void) | null = null;

  /** Whether the connection's scheduler can send something for this stream now. */
  hasSendable(): boolean {
    if (this.sendClosed || this.state === 'pending') return false;
    if (this.queue.length > 0) return this.sendWindow > 0;
    return this.endRequested && !this.endSent;
  }

  /**
   * Takes the next DATA payload of at most `max` bytes (already limited by the connection window)
   * and whether it ends the stream. Called only by the connection's scheduler.
   */
  takeData(max: number): { data: Buffer; end: boolean } | null {
    if (!this.hasSendable()) return null;
    const p = this.queue[0];
    if (!p) {
      this.endSent = true;
      return { data: EMPTY, end: true };
    }
    const n = Math.min(max, this.sendWindow, p.chunk.length - p.offset);
    if (n <= 0) return null;
    const data = p.offset === 0 && n === p.chunk.length ? p.chunk : p.chunk.subarray(p.offset, p.offset + n);
    p.offset += n;
    this.sendWindow -= n;
    this.sentBytes += n;
    this.queuedBytes -= n;
    let end = false;
    if (p.offset === p.chunk.length) {
      this.queue.shift();
      // The callback lets Writable hand over the next chunk or call _final.
      if (p.callback) process.nextTick(p.callback);
    }
    if (this.queue.length === 0 && this.endRequested) {
      this.endSent = true;
      end = true;
    }
    return { data, end };
  }

  /** The connection sent END_STREAM for this stream. */
  onEndSent(): void {
    if (this.sendClosed) return;
    this.endSent = true;
    this.sendClosed = true;
    this.state = this.state === 'half-closed-remote' ? 'closed' : 'half-closed-local';
    const cb = this.finalCallback;
    this.finalCallback = null;
    cb?.();
    if (this.state === 'closed') this.host.streamDone(this);
  }

  addSendCredit(increment: number): boolean {
    if (this.sendWindow + increment > 0x7fff_ffff) return false;
    this.sendWindow += increment;
    if (this.sendWindow > this.sendWindowHigh) this.sendWindowHigh = this.sendWindow;
    if (this.queue.length > 0) this.host.markSendable(this);
    return true;
  }

  // ---- Readable side ----

  override _read(): void {
    // Data arrives when the peer sends it; credit, not _read, is what paces the peer.
  }

  /**
   * Iterating the body must not tear down the stream: a server reads the request body with
   * `for await` and then still has to reply on the same stream. To cancel instead, call destroy().
   */
  override [Symbol.asyncIterator](): AsyncIterableIterator<any> {
    return this.iterator({ destroyOnReturn: false });
  }

  /** Every consumer (pipe, async iteration, read()) goes through here: return credit for what it took. */
  override read(size?: number): any {
    const chunk = super.read(size);
    if (chunk !== null) this.returnCredit();
    return chunk;
  }

  /** DATA arrived for this stream; the connection has already checked and charged the windows. */
  onData(data: Buffer, end: boolean): void {
    this.receivedBytes += data.length;
    this.recvWindow -= data.length;
    if (data.length > 0) {
      this.pushedBytes += data.length;
      this.push(data);
      // A reader that keeps up took the data during push(), or takes it before much more arrives.
      if (this.readableLength > this.unreadPeak) this.unreadPeak = this.readableLength;
    }
    if (end) this.onRemoteEnd();
    else this.returnCredit();
  }

  onRemoteEnd(): void {
    this.remoteEnded = true;
    this.state = this.state === 'half-closed-local' ? 'closed' : this.state === 'pending' ? 'pending' : 'half-closed-remote';
    this.push(null);
    this.returnCredit();
    if (this.state === 'closed') this.host.streamDone(this);
  }

  get isRemoteEnded(): boolean {
    return this.remoteEnded;
  }

  get isSendClosed(): boolean {
    return this.sendClosed;
  }

  /**
   * Returns consumed bytes as credit: every byte to the connection, which grants its own credit once
   * half its window is consumed, whichever streams consumed it; stream credit once half the stream's
   * window is consumed. (Reporting to the connection only with stream credit would let many streams,
   * each below its own threshold, hold the whole connection window between them: a deadlock.)
   */
  private returnCredit(): void {
    const consumed = this.pushedBytes - this.readableLength;
    if (consumed > this.reportedBytes) {
      this.host.consumed(consumed - this.reportedBytes);
      this.reportedBytes = consumed;
    }
    const fresh = consumed - this.creditedBytes;
    if (fresh <= 0) return;
    if (this.remoteEnded || this.closeError || fresh >= this.grantAt) {
      this.creditedBytes = consumed;
      if (!this.remoteEnded && !this.closeError && !this.destroyed) {
        const increment = fresh + this.grow();
        this.unreadPeak = this.readableLength;
        this.recvWindow += increment;
        this.host.sendStreamCredit(this, increment);
      }
    }
  }

  /**
   * Doubles the window, as far as the connection allows, once a whole window has arrived during which
   * the reader kept up (never more than a quarter of the window waited unread): the sender is then
   * held back by credit round trips, not by the reader. A reader that falls behind starts the count
   * again, so a slow reader never grows its window, and a pipeline hop whose downstream stalls soon
   * after it starts grows at most once.
   */
  private grow(): number {
    if (this.unreadPeak > this.windowSize / 4) {
      this.receivedAtGrowth = this.receivedBytes;
      return 0;
    }
    if (this.receivedBytes - this.receivedAtGrowth < this.windowSize) return 0;
    const extra = this.host.growWindow(this, this.windowSize);
    if (extra > 0) {
      this.windowSize += extra;
      this.grownBytes += extra;
      this.grantAt = Math.floor(this.windowSize / 2);
      this.receivedAtGrowth = this.receivedBytes;
    }
    return extra;
  }

  // ---- REPLY ----

  onReply(header: Buffer): void {
    this.replyHeader = header;
    const resolve = this.resolveReply;
    this.resolveReply = this.rejectReply = null;
    resolve?.(header);
  }

  // ---- Ending ----

  /**
   * The stream ended abnormally: a RESET from the peer, or the connection went away. `err` is null
   * only for a peer's NO_ERROR reset after its END_STREAM (it needs no more of our data).
   */
  onClosed(err: Error | null): void {
    if (this.state === 'closed') return;
    // After a NO_ERROR reset the peer simply needs no more of our data: writes complete, as if sent.
    this.markClosed(err);
    if (err) this.destroy(err);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Bytes never read count as consumed for the connection window, so credit is never lost.
    const unread = this.pushedBytes - this.reportedBytes;
    if (unread > 0) {
      this.reportedBytes = this.creditedBytes = this.pushedBytes;
      this.host.consumed(unread);
    }
    if (this.state !== 'closed') {
      const code: ErrorCode = err instanceof DfsError ? err.code : err ? 'INTERNAL_ERROR' : 'CANCEL';
      this.markClosed(err ?? new DfsError('CANCEL', `stream ${this.id} was cancelled`));
      this.host.resetStream(this, code, err?.message ?? '');
    }
    callback(err);
  }

  private markClosed(err: Error | null): void {
    this.state = 'closed';
    this.sendClosed = true;
    this.closeError = err ?? new DfsError('STREAM_CLOSED', `stream ${this.id} was closed by the peer`);
    const reject = this.rejectReply;
    this.resolveReply = this.rejectReply = null;
    reject?.(this.closeError);
    for (const p of this.queue.splice(0)) {
      if (p.callback) process.nextTick(p.callback, err);
    }
    this.queuedBytes = 0;
    const fin = this.finalCallback;
    this.finalCallback = null;
    if (fin) process.nextTick(fin, err);
  }
}

const EMPTY = Buffer.alloc(0);
