// A token bucket that paces bytes to an average rate: a caller awaits take(n) before it moves n
// bytes. Used by the keeper so that repair copies and scrubbing never take more than their share of
// the disk and the network, however much work is queued.

import { setTimeout as sleep } from 'node:timers/promises';

export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  /** Waiters go in order, so a big take cannot be overtaken forever by small ones. */
  private line: Promise<void> = Promise.resolve();

  /**
   * `ratePerS` bytes per second on average (Infinity: no limit); up to `burst` bytes may go at once
   * after a quiet spell. Default burst: a tenth of a second's worth, at least 64 KiB.
   */
  constructor(private ratePerS: number, private readonly burst = Math.max(64 * 1024, ratePerS / 10)) {
    if (!(ratePerS > 0)) throw new RangeError(`token bucket rate must be > 0, got ${ratePerS}`);
    this.tokens = burst;
  }

  get rate(): number {
    return this.ratePerS;
  }

  /** Changes the rate from now on. */
  setRate(ratePerS: number): void {
    if (!(ratePerS > 0)) throw new RangeError(`token bucket rate must be > 0, got ${ratePerS}`);
    this.refill();
    this.ratePerS = ratePerS;
  }

  /**
   * Resolves once `n` bytes may go. A take larger than the burst is allowed and leaves the bucket in
   * debt, which later takes wait off: the average rate holds for any piece size.
   */
  take(n: number, signal?: AbortSignal): Promise<void> {
    const turn = this.line.then(() => this.wait(n, signal));
    this.line = turn.catch(() => undefined);
    return turn;
  }

  private async wait(n: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.ratePerS === Number.POSITIVE_INFINITY) return;
    this.refill();
    this.tokens -= n;
    if (this.tokens < 0) await sleep((-this.tokens / this.ratePerS) * 1000, undefined, signal ? { signal } : {});
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerS);
    this.last = now;
  }
}
