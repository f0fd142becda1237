// A dfs wire connection over any duplex byte stream (net, tls, in-memory): preface and HELLO,
// stream multiplexing with credit, PING, idle timeout, two-phase GOAWAY and the local limits.
// The socket reader never waits on a stream: a slow stream only stops getting credit.

import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import {
  DEFAULT_SETTINGS, FRAME_HEADER_LENGTH, Flag, FrameType, HelloExtension, MAX_STREAM_ID, MAX_WINDOW,
  isKnownFrameType, type Settings,
} from '../wire/constants.js';
import { DfsError, WireError, type ErrorCode } from '../wire/errors.js';
import { FrameDecoder } from '../wire/decoder.js';
import {
  encodeCredit, encodeGoAway, encodeHello, encodeOpen, encodePing, encodePong, encodePreface,
  encodeReply, encodeReset, parseCredit, parseGoAway, parseHello, parseOpen, parseReset, resolveSettings,
  writeFrameHeader, type GoAway, type RawFrame,
} from '../wire/frames.js';
import { DEFAULT_LIMITS, RateCounter, type Limits } from './limits.js';
import { WireStream, type StreamHost } from './stream.js';
import { DEFAULT_WINDOW_GROWTH, type WindowGrowth } from './window-growth.js';

export type Role = 'client' | 'server';

/** Smallest CREDIT increment that can go uncounted by the control-frame rate (spec §10.2). */
const MIN_FREE_CREDIT = 1024;

/** Whether a CREDIT only gives back spent credit: large enough, and no window above its largest so far. */
function givesBackSpentCredit(increment: number, windowAfter: number, largestWindow: number): boolean {
  return increment >= MIN_FREE_CREDIT && increment * 16 >= largestWindow && windowAfter <= largestWindow;
}

/** Bytes queued on the socket before DATA waits for 'drain': several frames per system call. */
const OUTPUT_BATCH = 256 * 1024;

/**
 * Frames of at most this many bytes (control frames, DATA headers, small payloads) are copied into
 * one output buffer, so a flush hands the socket a few large writes instead of three small ones
 * per request; larger payloads are written as they are, without a copy.
 */
const COPY_LIMIT = 1024;
const SLAB_SIZE = 16 * 1024;

export interface ConnectionOptions {
  /** Clients open odd stream ids, servers even ones. */
  role: Role;
  /** What this side announces in HELLO; unspecified settings take the spec's defaults. */
  settings?: Partial<Settings>;
  limits?: Partial<Limits>;
  /** Implementation name sent in HELLO, for the peer's logs. */
  agent?: string;
  /** A label for error messages, such as the peer's address. */
  peerLabel?: string;
  /** How far receive windows may grow beyond the announced settings (spec §7.5); false keeps them fixed. */
  windowGrowth?: WindowGrowth | false;
}

interface PendingPing {
  resolve: (rttMs: number) => void;
  reject: (err: Error) => void;
  sentAt: bigint;
}

/** Frames waiting for the socket: control frames first, then DATA in round-robin across streams. */
export class Connection extends EventEmitter implements StreamHost {
  readonly role: Role;
  readonly localSettings: Settings;
  /** The peer's settings; the defaults until its HELLO arrives. */
  peerSettings: Settings = { ...DEFAULT_SETTINGS };
  readonly limits: Limits;
  readonly peerLabel: string;
  /** The peer's agent name from its HELLO. */
  peerAgent = '';
  /** Resolves once the peer's HELLO has arrived; rejects if the connection fails first. */
  readonly ready: Promise<void>;

  private readonly socket: Duplex;
  private readonly decoder: FrameDecoder;
  private readonly streams = new Map<number, WireStream>();
  private nextLocalId: number;
  private lastPeerId = 0;
  private peerOpenCount = 0;
  private localOpenCount = 0;
  private readonly waitingToOpen: WireStream[] = [];
  private helloReceived = false;
  private resolveReady!: () => void;
  private rejectReady!: (err: Error) => void;

  private sendWindow = DEFAULT_SETTINGS.connectionWindow;
  /** The largest the connection send window has been: CREDIT up to it only gives back spent credit. */
  private sendWindowHigh = DEFAULT_SETTINGS.connectionWindow;
  private recvWindow: number;
  private consumedSinceGrant = 0;
  private readonly windowGrowth: WindowGrowth | null;
  /** Connection window granted beyond the setting for live streams' growth, taken from the budget. */
  private liveGrowth = 0;
  /** Growth of ended streams still granted to the peer: withheld from later grants, then handed back to the budget. */
  private growthToWithhold = 0;

  private readonly control: Buffer[] = [];
  private readonly sendable: WireStream[] = [];
  private flushScheduled = false;
  /** Where flush() gathers small frames: bytes before slabFrom are with the socket, up to slabAt are not yet. */
  private slab: Buffer | null = null;
  private slabFrom = 0;
  private slabAt = 0;

  private readonly pings = new Map<string, PendingPing>();
  private lastFrameAt = Date.now();
  private idleTimer: NodeJS.Timeout | null = null;
  private helloTimer: NodeJS.Timeout | null = null;

  /** GOAWAY this side sent: streams the peer opens above this id are ignored. */
  private goAwaySentId = MAX_STREAM_ID;
  private goingAway = false;
  /** GOAWAY the peer sent. */
  peerGoAway: GoAway | null = null;
  private closed = false;
  private closeError: Error | null = null;
  private drainWaiters: (() => void)[] = [];

  private readonly rates: Record<'ping' | 'reset' | 'rapidReset' | 'empty' | 'control', RateCounter>;

  constructor(socket: Duplex, options: ConnectionOptions) {
    super();
    this.socket = socket;
    this.role = options.role;
    this.localSettings = resolveSettings(options.settings ?? {});
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.peerLabel = options.peerLabel ?? 'peer';
    this.nextLocalId = this.role === 'client' ? 1 : 2;
    this.recvWindow = this.localSettings.connectionWindow;
    this.windowGrowth = options.windowGrowth === false ? null : options.windowGrowth ?? DEFAULT_WINDOW_GROWTH;
    const ceiling = this.windowGrowth?.maxStreamWindow;
    if (ceiling !== undefined && !(Number.isSafeInteger(ceiling) && ceiling >= 1 && ceiling <= MAX_WINDOW)) {
      throw new RangeError(`windowGrowth.maxStreamWindow must be a byte count from 1 to ${MAX_WINDOW}, got ${ceiling}`);
    }
    this.decoder = new FrameDecoder({ maxFrameSize: this.localSettings.maxFrameSize, expectPreface: true, splitData: true });
    this.rates = {
      ping: new RateCounter(this.limits.pingsPerSecond),
      reset: new RateCounter(this.limits.resetsPerSecond),
      rapidReset: new RateCounter(this.limits.rapidResetsPerSecond),
      empty: new RateCounter(this.limits.emptyFramesPerSecond),
      control: new RateCounter(this.limits.controlFramesPerSecond),
    };
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Nobody may be awaiting `ready`; the failure is reported through 'close' as well.
    this.ready.catch(() => {});

    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', (err: Error) => this.destroy(new DfsError('CONNECTION_CLOSED', `connection to ${this.peerLabel} failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.destroy(new DfsError('CONNECTION_CLOSED', `connection to ${this.peerLabel} closed`)));
    socket.on('end', () => this.destroy(new DfsError('CONNECTION_CLOSED', `${this.peerLabel} ended the connection`)));
    socket.on('drain', () => this.flush());

    const extensions: [number, Buffer][] = options.agent ? [[HelloExtension.AGENT, Buffer.from(options.agent, 'utf8')]] : [];
    this.control.push(encodePreface(), encodeHello(this.changedSettings(), extensions));
    this.scheduleFlush();
    this.helloTimer = setTimeout(() => {
      if (!this.helloReceived) this.fail('PROTOCOL_ERROR', `no HELLO from ${this.peerLabel} within ${this.limits.helloTimeoutMs} ms`);
    }, this.limits.helloTimeoutMs);
    this.helloTimer.unref?.();
  }

  /** RESET and GOAWAY reasons are cut so the frame fits the peer's MAX_FRAME_SIZE. */
  private resetFrame(streamId: number, code: ErrorCode, finalSize: number, reason: string): Buffer {
    return encodeReset(streamId, code, finalSize, reason, this.peerSettings.maxFrameSize - 14);
  }

  private goAwayFrame(lastStreamId: number, code: ErrorCode, reason: string): Buffer {
    return encodeGoAway(lastStreamId, code, reason, this.peerSettings.maxFrameSize - 10);
  }

  /** Settings that differ from the defaults; the rest need not be sent. */
  private changedSettings(): Partial<Settings> {
    const out: Partial<Settings> = {};
    for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof Settings)[]) {
      if (this.localSettings[key] !== DEFAULT_SETTINGS[key]) out[key] = this.localSettings[key];
    }
    return out;
  }

  /** Receive window this connection holds beyond its settings, taken from the window budget (spec §7.5). */
  get windowGrowthHeld(): number {
    return this.liveGrowth + this.growthToWithhold;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether new streams may be opened: not closed, and neither side is going away. */
  get isUsable(): boolean {
    return !this.closed && !this.goingAway && this.peerGoAway === null;
  }

  get activeStreams(): number {
    return this.streams.size + this.waitingToOpen.length;
  }

  // ---- Opening streams ----

  /**
   * Opens a stream for an operation. The OPEN is sent once the peer's HELLO is in and the peer's
   * concurrency limit has room; until then the stream waits, in order.
   */
  openStream(op: number, opVersion: number, header: Buffer, options: { endStream?: boolean } = {}): WireStream {
    if (this.closed) throw this.closeError ?? new DfsError('CONNECTION_CLOSED', `connection to ${this.peerLabel} is closed`);
    if (!this.isUsable) throw new DfsError('REFUSED_STREAM', `connection to ${this.peerLabel} is going away; open the stream on a new connection`);
    if (4 + header.length > this.peerSettings.maxHeaderSize) {
      throw new DfsError('HEADER_TOO_LARGE', `request header of ${4 + header.length} bytes exceeds ${this.peerLabel}'s limit of ${this.peerSettings.maxHeaderSize}`);
    }
    const stream = new WireStream(this, {
      local: true, op, opVersion, header,
      sendWindow: this.peerSettings.streamWindow,
      recvWindow: this.localSettings.streamWindow,
    });
    if (options.endStream) {
      stream.endOnOpen = true;
      stream.end();
    }
    this.waitingToOpen.push(stream);
    this.openWaiting();
    return stream;
  }

  private openWaiting(): void {
    if (!this.helloReceived || this.closed) return;
    while (this.waitingToOpen.length > 0 && this.localOpenCount < this.peerSettings.maxConcurrentStreams) {
      const stream = this.waitingToOpen.shift()!;
      if (stream.destroyed) continue;
      if (this.nextLocalId > MAX_STREAM_ID) {
        stream.onClosed(new DfsError('REFUSED_STREAM', 'stream ids exhausted on this connection; open a new one'));
        continue;
      }
      stream.id = this.nextLocalId;
      this.nextLocalId += 2;
      stream.state = 'open';
      // Streams opened before HELLO were sized with default windows; use the peer's real ones.
      stream.sendWindow = stream.sendWindowHigh = this.peerSettings.streamWindow;
      this.streams.set(stream.id, stream);
      this.localOpenCount++;
      // A request without a body carries END_STREAM on the OPEN itself.
      this.control.push(encodeOpen(stream.id, stream.op, stream.opVersion, stream.header, stream.endOnOpen));
      if (stream.endOnOpen) stream.onEndSent();
      else this.markSendable(stream);
    }
    this.scheduleFlush();
  }

  // ---- StreamHost ----

  markSendable(stream: WireStream): void {
    if (stream.state === 'pending' || stream.inSendable) return;
    stream.inSendable = true;
    this.sendable.push(stream);
    this.scheduleFlush();
  }

  consumed(bytes: number): void {
    if (this.closed) return;
    if (this.growthToWithhold > 0) {
      // Bytes sent on credit that an ended stream's growth added are not granted again.
      const withheld = Math.min(this.growthToWithhold, bytes);
      this.growthToWithhold -= withheld;
      this.windowGrowth!.budget.release(withheld);
      bytes -= withheld;
    }
    this.consumedSinceGrant += bytes;
    // Half the setting, grown or not: a threshold that rose with the growth would let a grown stream
    // whose reader stopped hold back the credit the other streams need.
    if (this.consumedSinceGrant >= this.localSettings.connectionWindow / 2) {
      const increment = Math.min(this.consumedSinceGrant, MAX_WINDOW);
      this.consumedSinceGrant -= increment;
      this.recvWindow += increment;
      this.control.push(encodeCredit(0, increment));
      this.scheduleFlush();
    }
  }

  sendStreamCredit(stream: WireStream, increment: number): void {
    if (this.closed || stream.id === 0 || !this.streams.has(stream.id)) return;
    this.control.push(encodeCredit(stream.id, increment));
    this.scheduleFlush();
  }

  /**
   * Grows a stream's window by as much again, up to the ceiling, and the connection window by the
   * same amount, so that a grown stream whose reader later stalls cannot hold the window the other
   * streams need. Growth an ended stream left with the peer is reused first: the peer already holds
   * that connection credit. The rest must come from the budget, all of it or none.
   */
  growWindow(stream: WireStream, current: number): number {
    const growth = this.windowGrowth;
    if (growth === null || this.closed || !this.streams.has(stream.id)) return 0;
    const extra = Math.min(current, growth.maxStreamWindow - current);
    if (extra <= 0 || current + extra > MAX_WINDOW) return 0;
    const reused = Math.min(extra, this.growthToWithhold);
    const fresh = extra - reused;
    // At most 7 settings' worth: the window then never exceeds 8 times the setting, so grants of half
    // the setting stay at least 1/16 of the largest window, and the peer does not count them (spec
    // §10.2). All the credit granted, the setting plus the growth, must also stay a valid window.
    const held = this.liveGrowth + this.growthToWithhold + fresh;
    const setting = this.localSettings.connectionWindow;
    if (fresh > 0 && (held > 7 * setting || setting + held > MAX_WINDOW || !growth.budget.tryTake(fresh))) return 0;
    this.growthToWithhold -= reused;
    this.liveGrowth += extra;
    if (fresh > 0) {
      this.recvWindow += fresh;
      this.control.push(encodeCredit(0, fresh));
      this.scheduleFlush();
    }
    return extra;
  }

  resetStream(stream: WireStream, code: ErrorCode, reason: string): void {
    if (stream.id === 0) {
      // Never sent: nothing on the wire to reset.
      const i = this.waitingToOpen.indexOf(stream);
      if (i >= 0) this.waitingToOpen.splice(i, 1);
      return;
    }
    if (!this.closed) {
      this.control.push(this.resetFrame(stream.id, code, stream.sentBytes, reason));
      this.scheduleFlush();
    }
    this.forget(stream);
  }

  streamDone(stream: WireStream): void {
    this.forget(stream);
  }

  private forget(stream: WireStream): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    if (stream.grownBytes > 0) {
      this.liveGrowth -= stream.grownBytes;
      this.growthToWithhold += stream.grownBytes;
      stream.grownBytes = 0;
    }
    if (stream.local) this.localOpenCount--;
    else this.peerOpenCount--;
    this.openWaiting();
    if (this.streams.size === 0) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  // ---- Writing ----

  /**
   * Flushes once the current burst of work has settled: after every pending nextTick, so that a
   * stream's end() lands on the same DATA frame as its last write, and many streams share one writev.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(this.flushNow);
  }

  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  /**
   * Whether the socket has taken enough for now. A socket's own high-water mark (16 KiB for net) is
   * below one DATA frame, so write() returning false alone would mean one frame per system call;
   * instead up to OUTPUT_BATCH bytes are queued, and 'drain' (due once write() said false) resumes.
   */
  private socketFull(): boolean {
    return this.socket.writableNeedDrain && this.socket.writableLength >= OUTPUT_BATCH;
  }

  /** Writes control frames, then DATA round-robin while credit and the socket allow. */
  private flush(): void {
    if (this.closed) return;
    const socket = this.socket;
    socket.cork();
    try {
      for (const frame of this.control) this.put(frame);
      this.control.length = 0;
      while (this.sendable.length > 0 && !this.socketFull()) {
        const stream = this.sendable.shift()!;
        stream.inSendable = false;
        if (!stream.hasSendable()) continue; // waits for its own credit, or for the application
        // An END_STREAM without data needs no credit, so takeData may succeed with a zero window.
        const piece = stream.takeData(Math.min(this.sendWindow, this.peerSettings.maxFrameSize));
        if (piece === null) {
          // The connection window is spent: keep this stream first in line for the next CREDIT.
          stream.inSendable = true;
          this.sendable.unshift(stream);
          break;
        }
        this.sendWindow -= piece.data.length;
        this.putFrameHeader(FrameType.DATA, piece.end ? Flag.END_STREAM : 0, stream.id, piece.data.length);
        if (piece.data.length > 0) this.put(piece.data);
        if (piece.end) stream.onEndSent();
        else if (stream.hasSendable()) this.markSendable(stream);
      }
    } finally {
      // Even if a stream threw: what was gathered leaves now, ahead of anything written later.
      this.release();
      socket.uncork();
    }
    if (socket.writableLength > this.limits.maxBufferedOutput) {
      this.destroy(new DfsError('CONNECTION_CLOSED', `${this.peerLabel} is not reading: ${socket.writableLength} bytes queued`));
      return;
    }
  }

  /** Adds a frame or payload to the output: copied when small, handed to the socket as it is when large. */
  private put(bytes: Buffer): void {
    if (bytes.length > COPY_LIMIT) {
      this.release();
      this.socket.write(bytes);
      return;
    }
    const slab = this.room(bytes.length);
    bytes.copy(slab, this.slabAt);
    this.slabAt += bytes.length;
  }

  private putFrameHeader(type: number, flags: number, streamId: number, length: number): void {
    writeFrameHeader(this.room(FRAME_HEADER_LENGTH), this.slabAt, type, flags, streamId, length);
    this.slabAt += FRAME_HEADER_LENGTH;
  }

  /** The output buffer, with at least `n` bytes free after slabAt. */
  private room(n: number): Buffer {
    if (this.slab === null || SLAB_SIZE - this.slabAt < n) {
      this.release();
      this.slab = Buffer.allocUnsafe(SLAB_SIZE);
      this.slabFrom = this.slabAt = 0;
    }
    return this.slab;
  }

  /** Hands the gathered bytes to the socket. The buffer is not reused below slabAt: the socket may still hold them. */
  private release(): void {
    if (this.slabAt > this.slabFrom) {
      this.socket.write(this.slab!.subarray(this.slabFrom, this.slabAt));
      this.slabFrom = this.slabAt;
    }
  }

  // ---- Reading ----

  private onSocketData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastFrameAt = Date.now();
    try {
      this.decoder.push(chunk, (frame) => this.onFrame(frame));
    } catch (err) {
      if (err instanceof WireError) this.fail(err.code, err.message);
      else this.fail('INTERNAL_ERROR', `while handling a frame from ${this.peerLabel}: ${(err as Error).message}`);
    }
  }

  private onFrame(frame: RawFrame): void {
    if (this.closed) return;
    const { type } = frame;
    // CREDIT is counted in onCredit: only a CREDIT that does more than give back spent credit counts (spec §10.2).
    if (type !== FrameType.OPEN && type !== FrameType.REPLY && type !== FrameType.DATA && type !== FrameType.CREDIT) this.countControlFrame();
    switch (type) {
      case FrameType.HELLO: return this.onHello(frame);
      case FrameType.OPEN: return this.onOpen(frame);
      case FrameType.REPLY: return this.onReply(frame);
      case FrameType.DATA: return this.onData(frame);
      case FrameType.CREDIT: return this.onCredit(frame);
      case FrameType.RESET: return this.onReset(frame);
      case FrameType.PING: return this.onPing(frame);
      case FrameType.PONG: return this.onPong(frame);
      case FrameType.GOAWAY: return this.onGoAway(frame);
      default:
        // Unknown and grease types are skipped, but cost the peer like any empty frame.
        if (!isKnownFrameType(type) && !this.rates.empty.hit()) {
          throw new WireError('RATE_LIMITED', `more than ${this.limits.emptyFramesPerSecond} empty or unknown frames per second`);
        }
    }
  }

  private countControlFrame(): void {
    if (!this.rates.control.hit()) throw new WireError('RATE_LIMITED', `more than ${this.limits.controlFramesPerSecond} control frames per second`);
  }

  private onHello(frame: RawFrame): void {
    const hello = parseHello(frame.payload);
    this.peerSettings = resolveSettings(hello.settings);
    this.peerAgent = hello.extensions.get(HelloExtension.AGENT)?.toString('utf8') ?? '';
    this.sendWindow = this.sendWindowHigh = this.peerSettings.connectionWindow;
    this.helloReceived = true;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.startIdleTimer();
    this.resolveReady();
    this.emit('ready');
    this.openWaiting();
  }

  private isPeerId(id: number): boolean {
    return (id % 2 === 1) === (this.role === 'server');
  }

  /** Whether a stream id was ever opened (by either side), so frames for it are late, not bogus. */
  private wasOpened(id: number): boolean {
    return this.isPeerId(id) ? id <= this.lastPeerId : id < this.nextLocalId;
  }

  private onOpen(frame: RawFrame): void {
    const id = frame.streamId;
    if (!this.isPeerId(id)) throw new WireError('PROTOCOL_ERROR', `OPEN on stream ${id}: ${this.role === 'server' ? 'clients open odd' : 'servers open even'} ids`);
    if (id <= this.lastPeerId) throw new WireError('PROTOCOL_ERROR', `OPEN on stream ${id}, not above the last opened stream ${this.lastPeerId}`);
    this.lastPeerId = id;
    // After our GOAWAY, streams above its id are ignored: the peer knows they were never processed.
    if (id > this.goAwaySentId) return;
    const endStream = (frame.flags & Flag.END_STREAM) !== 0;
    if (frame.payload.length > this.localSettings.maxHeaderSize) {
      this.control.push(this.resetFrame(id, 'HEADER_TOO_LARGE', 0,
        `OPEN header of ${frame.payload.length} bytes exceeds the ${this.localSettings.maxHeaderSize}-byte limit`));
      this.scheduleFlush();
      return;
    }
    if (this.peerOpenCount >= this.localSettings.maxConcurrentStreams) {
      this.control.push(this.resetFrame(id, 'REFUSED_STREAM', 0,
        `more than ${this.localSettings.maxConcurrentStreams} concurrent streams; not processed, retry later`));
      this.scheduleFlush();
      return;
    }
    const open = parseOpen(frame.payload, id);
    const stream = new WireStream(this, {
      local: false, op: open.op, opVersion: open.opVersion, header: open.header,
      sendWindow: this.peerSettings.streamWindow,
      recvWindow: this.localSettings.streamWindow,
    });
    stream.id = id;
    stream.state = 'open';
    this.streams.set(id, stream);
    this.peerOpenCount++;
    if (endStream) stream.onRemoteEnd();
    this.emit('stream', stream);
  }

  sendReply(stream: WireStream, header: Buffer, endStream: boolean): void {
    if (stream.local) throw new DfsError('PROTOCOL_ERROR', 'only the side that accepted a stream replies on it');
    if (stream.replied) throw new DfsError('PROTOCOL_ERROR', `stream ${stream.id} already replied`);
    if (stream.state === 'closed' || stream.isSendClosed) throw new DfsError('STREAM_CLOSED', `stream ${stream.id} is closed`);
    if (header.length > this.peerSettings.maxHeaderSize) {
      throw new DfsError('HEADER_TOO_LARGE', `reply header of ${header.length} bytes exceeds ${this.peerLabel}'s limit of ${this.peerSettings.maxHeaderSize}`);
    }
    stream.replied = true;
    this.control.push(encodeReply(stream.id, header, endStream));
    if (endStream) {
      stream.endOnOpen = true;
      stream.onEndSent();
      stream.end();
    }
    this.scheduleFlush();
  }

  private onReply(frame: RawFrame): void {
    const stream = this.streamFor(frame, 'REPLY');
    if (!stream) return;
    if (!stream.local) return this.resetFromPeerError(stream, 'PROTOCOL_ERROR', `REPLY on stream ${stream.id}, which the peer opened`);
    if (stream.replyHeader) return this.resetFromPeerError(stream, 'PROTOCOL_ERROR', `second REPLY on stream ${stream.id}`);
    if (stream.isRemoteEnded) return this.resetFromPeerError(stream, 'STREAM_CLOSED', `REPLY on stream ${stream.id} after its END_STREAM`);
    if (frame.payload.length > this.localSettings.maxHeaderSize) {
      return this.resetFromPeerError(stream, 'HEADER_TOO_LARGE', `REPLY header of ${frame.payload.length} bytes exceeds the ${this.localSettings.maxHeaderSize}-byte limit`);
    }
    stream.onReply(frame.payload);
    if (frame.flags & Flag.END_STREAM) stream.onRemoteEnd();
  }

  private onData(frame: RawFrame): void {
    const n = frame.payload.length;
    const end = (frame.flags & Flag.END_STREAM) !== 0;
    if (n > this.recvWindow) {
      throw new WireError('FLOW_CONTROL_ERROR', `DATA of ${n} bytes on stream ${frame.streamId} exceeds the connection window of ${this.recvWindow}`);
    }
    this.recvWindow -= n;
    if (n === 0 && !end && !this.rates.empty.hit()) {
      throw new WireError('RATE_LIMITED', `more than ${this.limits.emptyFramesPerSecond} empty or unknown frames per second`);
    }
    const stream = this.streamFor(frame, 'DATA');
    if (!stream) {
      // Late DATA for a closed stream is still charged, and its credit returned at once.
      this.consumed(n);
      return;
    }
    if (stream.local && !stream.replyHeader) {
      this.consumed(n);
      return this.resetFromPeerError(stream, 'PROTOCOL_ERROR', `DATA on stream ${stream.id} before its REPLY`);
    }
    if (stream.isRemoteEnded) {
      this.consumed(n);
      return this.resetFromPeerError(stream, 'STREAM_CLOSED', `DATA on stream ${stream.id} after its END_STREAM`);
    }
    if (n > stream.recvWindow) {
      this.consumed(n);
      return this.resetFromPeerError(stream, 'FLOW_CONTROL_ERROR', `DATA of ${n} bytes on stream ${stream.id} exceeds its window of ${stream.recvWindow}`);
    }
    stream.onData(frame.payload, end);
  }

  /**
   * CREDIT counts towards the control-frame rate (spec §10.2) unless it only gives back credit for
   * DATA this side sent: an increment of at least 1 KiB and 1/16 of the largest the window has been,
   * which leaves the window no larger than that. Such CREDITs add up to no more than the bytes sent,
   * so there are at most 16 of them per window's worth of DATA, however fast a legitimate transfer
   * runs. Measured against the largest window, not the announced one: a peer that announced a tiny
   * window and raised it once would otherwise have every later byte-sized increment go uncounted.
   */
  private onCredit(frame: RawFrame): void {
    const increment = parseCredit(frame.payload, frame.streamId);
    if (frame.streamId === 0) {
      const after = this.sendWindow + increment;
      if (!givesBackSpentCredit(increment, after, this.sendWindowHigh)) this.countControlFrame();
      if (after > MAX_WINDOW) {
        throw new WireError('FLOW_CONTROL_ERROR', `CREDIT of ${increment} overflows the connection window of ${this.sendWindow}`);
      }
      this.sendWindow = after;
      if (after > this.sendWindowHigh) this.sendWindowHigh = after;
      if (this.sendable.length > 0) this.scheduleFlush();
      return;
    }
    const stream = this.streams.get(frame.streamId);
    if (!stream || !givesBackSpentCredit(increment, stream.sendWindow + increment, stream.sendWindowHigh)) {
      // Late CREDIT for a closed stream counts too: there is no window left to check it against.
      this.countControlFrame();
    }
    if (!stream) {
      this.streamFor(frame, 'CREDIT'); // throws for a stream never opened
      return;
    }
    if (!stream.addSendCredit(increment)) {
      this.resetFromPeerError(stream, 'FLOW_CONTROL_ERROR', `CREDIT of ${increment} overflows the window of stream ${stream.id}`);
    }
  }

  private onReset(frame: RawFrame): void {
    if (!this.rates.reset.hit()) throw new WireError('RATE_LIMITED', `more than ${this.limits.resetsPerSecond} RESET frames per second`);
    const reset = parseReset(frame.payload, frame.streamId);
    const stream = this.streamFor(frame, 'RESET');
    if (!stream) return;
    if (reset.finalSize !== stream.receivedBytes) {
      throw new WireError('PROTOCOL_ERROR', `RESET on stream ${stream.id} gives final size ${reset.finalSize}, but ${stream.receivedBytes} bytes arrived`);
    }
    if (!stream.local && !stream.replied && !this.rates.rapidReset.hit()) {
      throw new WireError('RATE_LIMITED', `more than ${this.limits.rapidResetsPerSecond} streams opened and reset before a reply, per second`);
    }
    this.forget(stream);
    if (reset.code === 'NO_ERROR' && stream.isRemoteEnded) {
      stream.onClosed(null);
    } else {
      const why = reset.reason || `stream reset by ${this.peerLabel}`;
      stream.onClosed(new DfsError(reset.code, why));
    }
  }

  /** The open stream a frame belongs to; undefined for a closed one; throws for one never opened. */
  private streamFor(frame: RawFrame, what: string): WireStream | undefined {
    const stream = this.streams.get(frame.streamId);
    if (stream) return stream;
    if (!this.wasOpened(frame.streamId)) {
      throw new WireError('PROTOCOL_ERROR', `${what} on stream ${frame.streamId}, which was never opened`);
    }
    return undefined;
  }

  /** A stream-level violation by the peer: reset the stream, keep the connection. */
  private resetFromPeerError(stream: WireStream, code: ErrorCode, message: string): void {
    // A stream the peer makes this side reset costs as much as one it resets itself (spec §10.2).
    if (!this.rates.rapidReset.hit()) {
      throw new WireError('RATE_LIMITED', `more than ${this.limits.rapidResetsPerSecond} streams reset per second, by the peer or for its stream errors`);
    }
    this.forget(stream);
    this.control.push(this.resetFrame(stream.id, code, stream.sentBytes, message));
    this.scheduleFlush();
    stream.onClosed(new DfsError(code, message));
  }

  // ---- PING ----

  private onPing(frame: RawFrame): void {
    if (!this.rates.ping.hit()) throw new WireError('RATE_LIMITED', `more than ${this.limits.pingsPerSecond} PING frames per second`);
    // Answered ahead of any queued DATA: control frames always go first.
    this.control.push(encodePong(frame.payload));
    this.scheduleFlush();
  }

  private onPong(frame: RawFrame): void {
    const key = frame.payload.toString('hex');
    const ping = this.pings.get(key);
    if (!ping) return; // unsolicited: already counted as a control frame
    this.pings.delete(key);
    ping.resolve(Number(process.hrtime.bigint() - ping.sentAt) / 1e6);
  }

  /** Measures the round-trip time to the peer, in milliseconds. */
  ping(signal?: AbortSignal): Promise<number> {
    if (this.closed) return Promise.reject(this.closeError ?? new DfsError('CONNECTION_CLOSED', 'connection closed'));
    const opaque = randomBytes(8);
    const key = opaque.toString('hex');
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => {
        this.pings.delete(key);
        reject(new DfsError('CANCEL', 'ping cancelled', { cause: signal?.reason }));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pings.set(key, {
        resolve: (rtt) => { signal?.removeEventListener('abort', onAbort); resolve(rtt); },
        reject: (err) => { signal?.removeEventListener('abort', onAbort); reject(err); },
        sentAt: process.hrtime.bigint(),
      });
      this.control.push(encodePing(opaque));
      this.scheduleFlush();
    });
  }

  // ---- Idle timeout ----

  private startIdleTimer(): void {
    const mine = this.localSettings.idleTimeoutMs;
    const theirs = this.peerSettings.idleTimeoutMs;
    const timeout = mine === 0 ? theirs : theirs === 0 ? mine : Math.min(mine, theirs);
    if (timeout === 0) return;
    const tick = Math.max(10, Math.floor(timeout / 3));
    this.idleTimer = setInterval(() => {
      const silent = Date.now() - this.lastFrameAt;
      if (silent >= timeout) {
        this.fail('IDLE_TIMEOUT', `no frame from ${this.peerLabel} for ${silent} ms (idle timeout ${timeout} ms)`);
      } else if (silent >= tick && this.streams.size > 0 && this.pings.size === 0) {
        // Keep a connection with work in flight alive while the peer is busy but silent.
        this.ping().catch(() => {});
      }
    }, tick);
    this.idleTimer.unref?.();
  }

  // ---- GOAWAY and closing ----

  private onGoAway(frame: RawFrame): void {
    const goAway = parseGoAway(frame.payload);
    // A later GOAWAY may only lower the last id: streams once refused stay refused.
    if (this.peerGoAway) goAway.lastStreamId = Math.min(goAway.lastStreamId, this.peerGoAway.lastStreamId);
    this.peerGoAway = goAway;
    this.emit('goaway', goAway);
    // Streams this side opened above the peer's last id were never processed: safe to retry elsewhere.
    for (const stream of [...this.streams.values()]) {
      if (stream.local && stream.id > goAway.lastStreamId) {
        this.forget(stream);
        stream.onClosed(new DfsError('REFUSED_STREAM', `${this.peerLabel} is going away and did not process stream ${stream.id}; retry on a new connection`));
      }
    }
    for (const stream of this.waitingToOpen.splice(0)) {
      stream.onClosed(new DfsError('REFUSED_STREAM', `${this.peerLabel} is going away; the request was not sent`));
    }
    if (goAway.code !== 'NO_ERROR') {
      this.destroy(new DfsError(goAway.code, `${this.peerLabel} closed the connection: ${goAway.reason || goAway.code}`));
    } else if (this.streams.size === 0 && goAway.lastStreamId !== MAX_STREAM_ID) {
      this.destroy(null);
    }
  }

  /**
   * Graceful shutdown (spec §9): GOAWAY with the highest id, a PING round trip, GOAWAY with the
   * real last stream id, then streams in flight finish until the drain deadline.
   */
  async shutdown(reason = 'shutting down'): Promise<void> {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.control.push(this.goAwayFrame(MAX_STREAM_ID, 'NO_ERROR', reason));
    this.scheduleFlush();
    const deadline = AbortSignal.timeout(this.limits.drainTimeoutMs);
    try {
      if (this.helloReceived) await this.ping(deadline);
    } catch {
      // No answer in time: go on with the real last id.
    }
    if (this.closed) return;
    this.goAwaySentId = this.lastPeerId;
    this.control.push(this.goAwayFrame(this.lastPeerId, 'NO_ERROR', reason));
    this.scheduleFlush();
    if (this.streams.size > 0) {
      await new Promise<void>((resolve) => {
        this.drainWaiters.push(resolve);
        deadline.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    this.destroy(this.streams.size > 0 ? new DfsError('CANCEL', `drain deadline of ${this.limits.drainTimeoutMs} ms passed during shutdown`) : null);
  }

  /** Closes at once after telling the peer why with GOAWAY. */
  fail(code: ErrorCode, message: string): void {
    if (this.closed) return;
    this.control.push(this.goAwayFrame(this.lastPeerId, code, message));
    this.destroy(new DfsError(code, message));
  }

  /** Tears the connection down; every open stream fails with `err`. */
  destroy(err: Error | null = null): void {
    if (this.closed) return;
    // Frames already queued (a final REPLY, GOAWAY) still leave, ahead of the end of the socket.
    if (this.control.length > 0 && !this.socket.destroyed) {
      this.socket.cork();
      for (const frame of this.control.splice(0)) this.socket.write(frame);
      this.socket.uncork();
    }
    this.closed = true;
    this.closeError = err;
    this.windowGrowth?.budget.release(this.liveGrowth + this.growthToWithhold);
    this.liveGrowth = this.growthToWithhold = 0;
    if (this.idleTimer) clearInterval(this.idleTimer);
    if (this.helloTimer) clearTimeout(this.helloTimer);
    const streamErr = err ?? new DfsError('CONNECTION_CLOSED', `connection to ${this.peerLabel} closed`);
    this.rejectReady(streamErr);
    for (const stream of [...this.streams.values(), ...this.waitingToOpen.splice(0)]) {
      stream.onClosed(streamErr);
    }
    this.streams.clear();
    for (const ping of this.pings.values()) ping.reject(streamErr);
    this.pings.clear();
    for (const w of this.drainWaiters.splice(0)) w();
    this.socket.end();
    // Give a GOAWAY already queued a moment to leave, but never wait on a peer that does not read.
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    timer.unref?.();
    this.socket.once('close', () => clearTimeout(timer));
    this.emit('close', err);
  }

  /** Closes gracefully when `err` is absent, at once otherwise. */
  close(err?: Error): Promise<void> {
    if (err) {
      this.destroy(err);
      return Promise.resolve();
    }
    return this.shutdown();
  }
}

