// An in-memory duplex pair: two connected byte streams with no sockets and no timing,
// for deterministic engine tests.

import { Duplex } from 'node:stream';

class MemoryEnd extends Duplex {
  peer!: MemoryEnd;
  private waiting: (() => void) | null = null;

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    // Deliver asynchronously, as a socket would, and respect the reader's back-pressure.
    if (this.peer.push(chunk)) process.nextTick(callback);
    else this.peer.waiting = callback;
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.peer.push(null);
    callback();
  }

  override _read(): void {
    const resume = this.waiting;
    this.waiting = null;
    resume?.();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.destroy();
    callback(err);
  }
}

export function duplexPair(highWaterMark = 64 * 1024): [Duplex, Duplex] {
  const a = new MemoryEnd({ highWaterMark });
  const b = new MemoryEnd({ highWaterMark });
  a.peer = b;
  b.peer = a;
  return [a, b];
}
