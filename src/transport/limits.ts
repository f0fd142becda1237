// Local policy limits of a connection (spec §10) and the rate counter that enforces them.
// Settings are negotiated in HELLO; these are not: each side polices what its peer may cost it.

export interface Limits {
  /** PING frames accepted per second. */
  pingsPerSecond: number;
  /** RESET frames accepted per second. */
  resetsPerSecond: number;
  /** Streams the peer opened and then reset before this side replied ("rapid reset"), per second. */
  rapidResetsPerSecond: number;
  /** Frames that carry no work: empty DATA without END_STREAM, unknown and grease types, per second. */
  emptyFramesPerSecond: number;
  /** All frames but OPEN, REPLY and DATA, per second; a CREDIT that only gives back spent credit is not counted (spec §10.2). */
  controlFramesPerSecond: number;
  /** Bytes queued towards a peer that does not read before the connection is destroyed. */
  maxBufferedOutput: number;
  /** How long a graceful shutdown waits for streams in flight. */
  drainTimeoutMs: number;
  /** How long to wait for the peer's preface and HELLO after connecting. */
  helloTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  pingsPerSecond: 50,
  resetsPerSecond: 200,
  rapidResetsPerSecond: 100,
  emptyFramesPerSecond: 100,
  controlFramesPerSecond: 10_000,
  maxBufferedOutput: 16 * 1024 * 1024,
  drainTimeoutMs: 10_000,
  helloTimeoutMs: 10_000,
});

/**
 * Counts events over a sliding one-second window, approximated by two fixed windows
 * with the previous one weighted by how much of it still overlaps: O(1) memory per counter.
 */
export class RateCounter {
  private windowStart = 0;
  private current = 0;
  private previous = 0;

  constructor(private readonly limitPerSecond: number, private readonly now: () => number = Date.now) {}

  /** Records one event; returns false when the rate now exceeds the limit. */
  hit(): boolean {
    const t = this.now();
    const elapsed = t - this.windowStart;
    if (elapsed >= 1000) {
      this.previous = elapsed >= 2000 ? 0 : this.current;
      this.current = 0;
      this.windowStart = elapsed >= 2000 ? t : this.windowStart + 1000;
    }
    this.current++;
    const overlap = 1 - (t - this.windowStart) / 1000;
    return this.previous * overlap + this.current <= this.limitPerSecond;
  }
}
