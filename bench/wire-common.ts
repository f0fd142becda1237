// What every contender in the wire benchmark provides, and the small helpers they share:
// the bulk write pump, the latency recorder and the statistics.

import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';

/** Where a contender's servers listen; each contender decides which ports it needs. */
export type Ports = Record<string, number>;

export interface BulkOptions {
  /** Total payload bytes, split evenly across the streams. */
  totalBytes: number;
  streams: number;
  /** The buffer written again and again; its size is the write() granularity. */
  chunk: Buffer;
}

export interface RpcOptions {
  /** Requests kept outstanding on the one connection. */
  inflight: number;
  /** Stop issuing after this many requests, or after `seconds`, whichever comes first. */
  count: number;
  seconds: number;
  /** Request body; its length is the response body length too. */
  body: Buffer;
}

export interface RpcResult {
  completed: number;
  seconds: number;
  /** Per-request latencies in microseconds, in completion order. */
  latenciesUs: Float64Array;
}

/**
 * A transport measured by the harness. `serve` runs in the server child process; the rest in the
 * client. Connections are set up before the clock starts and torn down after it stops.
 */
export interface Contender {
  readonly name: string;
  serve(): Promise<Ports>;
  /** Uploads `totalBytes` and resolves once the server has confirmed receiving every byte. */
  bulk(ports: Ports, options: BulkOptions): Promise<{ seconds: number }>;
  rpc(ports: Ports, options: RpcOptions): Promise<RpcResult>;
}

export const HOST = '127.0.0.1';

/**
 * Writes `total` bytes of `chunk` repeats, honouring write()'s return value, then ends the stream.
 * Only 'drain' is awaited, so a stream that dies mid-transfer surfaces through once()'s 'error' rejection.
 */
export async function pump(w: Writable, chunk: Buffer, total: number): Promise<void> {
  let left = total;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    left -= n;
    if (!w.write(n === chunk.length ? chunk : chunk.subarray(0, n)) && left > 0) await once(w, 'drain');
  }
  w.end();
}

/** Splits `total` into `parts` near-equal shares that add up exactly. */
export function shares(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total - base * parts ? 1 : 0));
}

/**
 * Drives a closed loop of `inflight` requests: each completion starts the next one until the count or
 * the time runs out. `issue(done)` starts one request and calls `done()` once its response has fully arrived.
 */
export function closedLoop(
  options: RpcOptions,
  issue: (done: (err?: Error | null) => void) => void,
): Promise<RpcResult> {
  return new Promise((resolve, reject) => {
    // Grown by doubling; capped so a runaway count cannot exhaust memory (8 bytes a sample).
    let latencies = new Float64Array(Math.min(options.count, 1 << 16));
    const maxSamples = 1 << 25;
    let issued = 0;
    let completed = 0;
    let outstanding = 0;
    let failed = false;
    const start = performance.now();
    const stopAt = start + options.seconds * 1000;
    let last = start;
    const next = (): void => {
      const t0 = performance.now();
      issued++;
      outstanding++;
      issue((err) => {
        if (failed) return;
        if (err) {
          failed = true;
          reject(err);
          return;
        }
        const t1 = performance.now();
        outstanding--;
        if (completed === latencies.length && completed < maxSamples) {
          const grown = new Float64Array(Math.min(latencies.length * 2, maxSamples));
          grown.set(latencies);
          latencies = grown;
        }
        if (completed < latencies.length) latencies[completed] = (t1 - t0) * 1000;
        completed++;
        last = t1;
        if (issued < options.count && t1 < stopAt) next();
        else if (outstanding === 0) {
          resolve({ completed, seconds: (last - start) / 1000, latenciesUs: latencies.subarray(0, Math.min(completed, latencies.length)) });
        }
      });
    };
    for (let i = 0; i < options.inflight && issued < options.count; i++) next();
  });
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile over a copy of the samples. */
export function percentile(samples: Float64Array, p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = Float64Array.from(samples).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Rejects with a message naming `what` unless `promise` settles within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${(ms / 1000).toFixed(0)} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs a benchmark's main function: exits 0 when it resolves (a contender or client left open must
 * not keep the process alive), 1 with the error when it rejects.
 */
/** A bad command-line argument: reported in one line, without a stack, with exit code 2. */
export class UsageError extends Error {}

export function runMain(name: string, main: () => Promise<void>): void {
  main().then(
    () => {
      setTimeout(() => process.exit(0), 2000).unref();
    },
    (err: unknown) => {
      const usage = err instanceof UsageError || (err as { code?: unknown })?.code?.toString().startsWith('ERR_PARSE_ARGS');
      if (usage) {
        console.error(`${name}: ${(err as Error).message} (--help lists the options)`);
        process.exit(2);
      }
      console.error(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exit(1);
    },
  );
}
