// The incremental decoder (spec §2-§3): preface, then frames, from byte chunks split anywhere.
// An explicit state machine over buffered chunks; a frame split across reads is the normal case.

import {
  FRAME_HEADER_LENGTH, Flag, FrameType, MAX_STREAM_ID, PREFACE_LENGTH, PREFACE_MAGIC, PROTOCOL_MAJOR_VERSION, frameTypeName,
} from './constants.js';
import { WireError } from './errors.js';
import { checkFrameHeader, type RawFrame } from './frames.js';

export interface DecoderOptions {
  /** Largest payload accepted; a larger declared length fails before any allocation. */
  maxFrameSize: number;
  /** Whether the byte stream starts with the 8-byte preface (true on real connections). */
  expectPreface?: boolean;
  /**
   * Deliver DATA payloads in the pieces they arrive in instead of one whole frame, so a frame that
   * spans two reads is never copied. Only the last piece of a frame keeps END_STREAM; pieces are
   * never empty (an empty DATA frame is delivered whole). Off by default: tools and vectors see frames.
   */
  splitData?: boolean;
}

type State = 'preface' | 'header' | 'payload' | 'failed';

export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  private buffered = 0;
  private state: State;
  private maxFrameSize: number;
  /** With a preface the first frame must be HELLO; without one the stream may start mid-connection, so HELLO is optional. */
  private readonly helloRequired: boolean;
  private framesSeen = 0;
  /** Bytes consumed so far, so errors can name the offset where the stream went wrong. */
  private offset = 0;
  private frameStart = 0;
  private type = 0;
  private flags = 0;
  private streamId = 0;
  private length = 0;
  /** Payload bytes of the current DATA frame not yet delivered, when splitting. */
  private remaining = 0;
  private readonly splitData: boolean;

  constructor(options: DecoderOptions) {
    this.maxFrameSize = options.maxFrameSize;
    this.state = options.expectPreface === false ? 'header' : 'preface';
    this.helloRequired = options.expectPreface !== false;
    this.splitData = options.splitData === true;
  }

  /** Lowering or raising the limit applies from the next frame header on. */
  setMaxFrameSize(size: number): void {
    this.maxFrameSize = size;
  }

  /** Bytes received but not yet forming a whole frame; at most one header plus one payload. */
  get pendingBytes(): number {
    return this.buffered;
  }

  get bytesConsumed(): number {
    return this.offset;
  }

  /** Feeds bytes; calls `onFrame` for each complete frame. Throws WireError on the first violation and stays failed. */
  push(chunk: Buffer, onFrame: (frame: RawFrame) => void): void {
    if (this.state === 'failed') throw new WireError('PROTOCOL_ERROR', 'decoder already failed');
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    try {
      this.drain(onFrame);
    } catch (err) {
      this.state = 'failed';
      throw err;
    }
  }

  private drain(onFrame: (frame: RawFrame) => void): void {
    for (;;) {
      switch (this.state) {
        case 'preface':
          if (!this.checkPreface()) return;
          break;
        case 'header': {
          if (this.buffered < FRAME_HEADER_LENGTH) return;
          this.frameStart = this.offset;
          // Read the header in place when it sits in one chunk: no Buffer made for nine bytes.
          const first = this.chunks[0]!;
          const inPlace = first.length - this.head >= FRAME_HEADER_LENGTH;
          const h = inPlace ? first : this.take(FRAME_HEADER_LENGTH);
          const at = inPlace ? this.head : 0;
          this.length = (h[at]! << 16) | (h[at + 1]! << 8) | h[at + 2]!;
          this.type = h[at + 3]!;
          this.flags = h[at + 4]!;
          // The top bit of the stream id is reserved: ignored on receipt.
          this.streamId = h.readUInt32BE(at + 5) & MAX_STREAM_ID;
          if (inPlace) this.skip(FRAME_HEADER_LENGTH);
          if (this.length > this.maxFrameSize) {
            throw new WireError('FRAME_SIZE_ERROR',
              `${frameTypeName(this.type)} frame at offset ${this.frameStart} declares ${this.length} bytes, above the ${this.maxFrameSize}-byte limit`);
          }
          try {
            checkFrameHeader(this.type, this.flags, this.streamId, this.length);
          } catch (err) {
            throw this.at(err);
          }
          if (this.framesSeen === 0 && this.helloRequired && this.type !== FrameType.HELLO) {
            throw new WireError('PROTOCOL_ERROR', `the first frame must be HELLO, got ${frameTypeName(this.type)} at offset ${this.frameStart}`);
          }
          if (this.framesSeen > 0 && this.type === FrameType.HELLO) {
            throw new WireError('PROTOCOL_ERROR', `HELLO at offset ${this.frameStart} is not the first frame: settings are fixed for the connection`);
          }
          this.framesSeen++;
          this.state = 'payload';
          break;
        }
        case 'payload': {
          if (this.splitData && this.type === FrameType.DATA && this.length > 0) {
            if (this.remaining === 0) this.remaining = this.length;
            while (this.remaining > 0 && this.buffered > 0) {
              const piece = this.take(Math.min(this.remaining, this.chunks[0]!.length - this.head));
              this.remaining -= piece.length;
              const flags = this.remaining === 0 ? this.flags : this.flags & ~Flag.END_STREAM;
              onFrame({ type: this.type, flags, streamId: this.streamId, payload: piece });
            }
            if (this.remaining > 0) return;
            this.state = 'header';
            break;
          }
          if (this.buffered < this.length) return;
          const payload = this.take(this.length);
          this.state = 'header';
          onFrame({ type: this.type, flags: this.flags, streamId: this.streamId, payload });
          break;
        }
        case 'failed':
          return;
      }
    }
  }

  private checkPreface(): boolean {
    // Compare byte by byte as they arrive, so a wrong protocol fails at its first wrong byte.
    if (this.buffered === 0) return false; // an empty first read is not an error (peek needs a chunk)
    const have = Math.min(this.buffered, PREFACE_LENGTH);
    const head = this.peek(have);
    for (let i = 0; i < Math.min(have, PREFACE_MAGIC.length); i++) {
      if (head[i] !== PREFACE_MAGIC[i]) {
        throw new WireError('BAD_PREFACE',
          `byte ${i} of the preface is 0x${head[i]!.toString(16).padStart(2, '0')}, expected 0x${PREFACE_MAGIC[i]!.toString(16).padStart(2, '0')}: the peer does not speak dfs wire`);
      }
    }
    if (have < PREFACE_LENGTH) return false;
    const version = head[PREFACE_MAGIC.length]!;
    if (version !== PROTOCOL_MAJOR_VERSION) {
      throw new WireError('VERSION_MISMATCH', `peer speaks dfs wire major version ${version}, this side speaks ${PROTOCOL_MAJOR_VERSION}`);
    }
    this.take(PREFACE_LENGTH);
    this.state = 'header';
    return true;
  }

  private at(err: unknown): unknown {
    if (err instanceof WireError) {
      return new WireError(err.code, `${err.message} (frame at offset ${this.frameStart})`, err.streamId);
    }
    return err;
  }

  /** Returns the first n buffered bytes without consuming them. */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    return Buffer.concat([first.subarray(this.head), ...this.chunks.slice(1)]).subarray(0, n);
  }

  /** Consumes n bytes that lie within the first chunk. */
  private skip(n: number): void {
    this.buffered -= n;
    this.offset += n;
    this.head += n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }

  /**
   * Consumes n buffered bytes: a slice when they sit in one chunk, one copy when they span several.
   * The first chunk is not re-sliced per frame: `head` marks how much of it is already consumed.
   */
  private take(n: number): Buffer {
    if (n === 0) return EMPTY; // empty payloads (a REPLY without header fields) share one buffer
    const first = this.chunks[0]!;
    const available = first.length - this.head;
    if (available >= n) {
      const out = this.head === 0 && n === first.length ? first : first.subarray(this.head, this.head + n);
      this.skip(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0]!;
      const want = Math.min(n - at, c.length - this.head);
      c.copy(out, at, this.head, this.head + want);
      at += want;
      this.skip(want);
    }
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
