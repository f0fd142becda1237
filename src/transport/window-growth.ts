// Receive-window growth (spec §7.5, "Growing a window"): a stream whose reader keeps up with a
// sustained transfer has its window doubled, so one stream is not held to one window per credit
// round trip; the bytes a process may hold beyond its announced windows come from one budget.

/** How far a connection may grow its receive windows beyond the announced settings. */
export interface WindowGrowth {
  /** Largest a stream's receive window grows to; at or below STREAM_WINDOW, windows never grow. */
  maxStreamWindow: number;
  /** Shared by every connection that grows windows; bounds the extra memory all of them may hold. */
  budget: WindowBudget;
}

/**
 * Bytes of receive window granted beyond the announced settings, across connections. A connection
 * takes from it when it grows a window and gives back once the extra credit is spent and withheld,
 * or when it closes; what is taken is what peers may have in flight beyond the settings.
 */
export class WindowBudget {
  private available: number;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 0) throw new RangeError(`window budget must be a byte count, got ${capacity}`);
    this.available = capacity;
  }

  /** Takes `bytes` if the budget still holds them all. */
  tryTake(bytes: number): boolean {
    if (bytes > this.available) return false;
    this.available -= bytes;
    return true;
  }

  release(bytes: number): void {
    this.available = Math.min(this.capacity, this.available + bytes);
  }

  get free(): number {
    return this.available;
  }
}

/** Windows grow to 16 MiB per stream, within 128 MiB per process, unless told otherwise. */
export const DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024;
export const PROCESS_WINDOW_BUDGET = new WindowBudget(128 * 1024 * 1024);

export const DEFAULT_WINDOW_GROWTH: Readonly<WindowGrowth> = Object.freeze({
  maxStreamWindow: DEFAULT_MAX_STREAM_WINDOW,
  budget: PROCESS_WINDOW_BUDGET,
});
