// The master's metadata on disk: checkpoints plus journal segments, loaded at start-up and kept
// short by checkpointing in a worker thread while the master goes on serving.
//
// Layout of the data directory (N is a 16-digit, zero-padded sequence number):
//   journal-N.log       segment N: the entries made after checkpoint N, in order
//   checkpoint-N.ckpt   the state after every entry of the segments before N (N = 0: none)
//   checkpoint-N.ckpt.tmp  a checkpoint being written; never read, removed at start-up
//
// A checkpoint of N is made in four steps, each durable before the next begins:
//   1. the journal rotates: new appends go to the new, empty segment N (created, directory fsynced);
//   2. a worker loads the previous checkpoint, replays the closed segments before N from disk, and
//      writes checkpoint-N.ckpt.tmp (fsync);
//   3. renames it to checkpoint-N.ckpt and fsyncs the directory;
//   4. deletes the older checkpoint and segments.
// At start the newest checkpoint K whose segments K, K+1, ... are all present and which passes its
// checksum is loaded, and those segments are replayed. A crash between any two steps leaves
// either the old checkpoint with every segment after it (before step 3 is durable) or the new one
// with every segment after it (from then on): every acknowledged entry is in one of the two chains.

import { readdirSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { DfsError } from '../wire/errors.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { CheckpointReader, writeCheckpointFile } from './checkpoint-format.js';
import { Journal, readSegment } from './journal.js';
import { MetadataState } from './namespace.js';
import type { Entry } from './entries.js';

/** Entries in a journal segment that trigger a checkpoint. */
export const DEFAULT_CHECKPOINT_ENTRIES = 100_000;
/** Bytes in a journal segment that trigger a checkpoint. */
export const DEFAULT_CHECKPOINT_BYTES = 64 * 1024 * 1024;

const LEGACY_JOURNAL = 'journal.log';
const SEGMENT = /^journal-(\d{16})\.log$/;
const CHECKPOINT = /^checkpoint-(\d{16})\.ckpt$/;

const pad = (n: number) => String(n).padStart(16, '0');
export const segmentName = (n: number) => `journal-${pad(n)}.log`;
export const checkpointName = (n: number) => `checkpoint-${pad(n)}.ckpt`;

export interface MetadataStoreOptions {
  dir: string;
  /** Checkpoint once the current segment holds this many entries. */
  checkpointEntries?: number;
  /** ... or this many bytes. */
  checkpointBytes?: number;
  log?: (line: string) => void;
}

interface Listing {
  segments: number[];
  checkpoints: number[];
}

function list(dir: string): Listing {
  const segments: number[] = [];
  const checkpoints: number[] = [];
  for (const name of readdirSync(dir)) {
    let m = SEGMENT.exec(name);
    if (m) segments.push(Number(m[1]));
    else if ((m = CHECKPOINT.exec(name))) checkpoints.push(Number(m[1]));
  }
  const up = (a: number, b: number) => a - b;
  return { segments: segments.sort(up), checkpoints: checkpoints.sort(up) };
}

/** Whether the segments from `k` on are k, k+1, ... without a gap (none at all is fine too). */
function chainFrom(segments: readonly number[], k: number): boolean {
  const later = segments.filter((s) => s >= k);
  return later.every((s, i) => s === k + i);
}

/** Replays closed segments [from, to) into `state`; a torn record in one is damage, not a crash. */
async function replayClosed(dir: string, state: MetadataState, from: number, to: number): Promise<void> {
  for (let seg = from; seg < to; seg++) {
    const file = join(dir, segmentName(seg));
    const r = await readSegment(file, (e) => state.apply(e));
    if (r.droppedBytes > 0) {
      throw new DfsError('IO_ERROR', `journal ${file} is damaged at byte ${r.validBytes}: a later segment exists, so its last record cannot be a torn append`);
    }
  }
}

/** Removes checkpoints and segments older than `keep`, then fsyncs the directory. */
async function removeBefore(dir: string, keep: number): Promise<number> {
  const { segments, checkpoints } = list(dir);
  let removed = 0;
  for (const name of [...checkpoints.filter((c) => c < keep).map(checkpointName), ...segments.filter((s) => s < keep).map(segmentName)]) {
    unlinkSync(join(dir, name));
    removed++;
  }
  if (removed > 0) await fsyncDir(dir);
  return removed;
}

/** Loads a checkpoint file, verified before a single field is read. */
function loadCheckpoint(file: string): MetadataState {
  const r = CheckpointReader.open(file);
  try {
    return MetadataState.readCheckpoint(r);
  } finally {
    r.close();
  }
}

/** Writes checkpoint `seq` of `state` durably: temp file, fsync, rename, directory fsync. */
export async function writeCheckpoint(dir: string, seq: number, state: MetadataState): Promise<number> {
  const bytes = writeCheckpointFile(join(dir, checkpointName(seq)), (w) => state.writeCheckpoint(w));
  await fsyncDir(dir);
  return bytes;
}

/**
 * The worker's job: checkpoint `to` from checkpoint `base` (or the empty state) and the closed
 * segments [from, to). Reads only files no one writes any more.
 */
export async function compact(dir: string, base: number | null, from: number, to: number): Promise<{ bytes: number; files: number }> {
  const state = base === null ? new MetadataState() : loadCheckpoint(join(dir, checkpointName(base)));
  await replayClosed(dir, state, from, to);
  const bytes = await writeCheckpoint(dir, to, state);
  return { bytes, files: state.stats().files };
}

interface Loaded {
  state: MetadataState;
  /** Checkpoint loaded, or null when the state was replayed from segment 0. */
  checkpoint: number | null;
  /** The newest segment: where appends go. */
  segment: number;
  validBytes: number;
  entries: number;
}

async function load(dir: string, log: (line: string) => void): Promise<Loaded> {
  for (const name of readdirSync(dir)) {
    // A checkpoint that never reached its rename: never read, so removing it loses nothing.
    if (name.endsWith('.ckpt.tmp')) unlinkSync(join(dir, name));
  }
  let listing = list(dir);
  const legacy = readdirSync(dir).includes(LEGACY_JOURNAL);
  if (legacy) {
    if (listing.segments.length > 0 || listing.checkpoints.length > 0) {
      throw new DfsError('IO_ERROR', `metadata in ${dir}: both ${LEGACY_JOURNAL} and journal segments exist; move one of them away`);
    }
    // The single journal of earlier versions is segment 0 with no checkpoint before it.
    renameSync(join(dir, LEGACY_JOURNAL), join(dir, segmentName(0)));
    await fsyncDir(dir);
    listing = list(dir);
  }
  const { segments, checkpoints } = listing;
  let state: MetadataState | undefined;
  let checkpoint: number | null = null;
  let firstError: Error | undefined;
  for (const k of [...checkpoints].reverse()) {
    const file = join(dir, checkpointName(k));
    if (!chainFrom(segments, k)) {
      firstError ??= new DfsError('IO_ERROR', `checkpoint ${file} cannot be used: the journal segments after it have a gap (found ${segments.join(', ')})`);
      continue;
    }
    try {
      state = loadCheckpoint(file);
      checkpoint = k;
      break;
    } catch (err) {
      log(`${(err as Error).message}; trying an older checkpoint`);
      firstError ??= err as Error;
    }
  }
  if (state === undefined) {
    const scratch = segments.length === 0 ? checkpoints.length === 0 : segments[0] === 0 && chainFrom(segments, 0);
    if (!scratch) {
      throw firstError ?? new DfsError('IO_ERROR', `metadata in ${dir}: no checkpoint, and journal segment 0 is missing (segments ${segments.join(', ')})`);
    }
    if (firstError) log(`no usable checkpoint; replaying the whole journal from segment 0`);
    state = new MetadataState();
  }
  const first = checkpoint ?? 0;
  const last = Math.max(first, ...segments);
  await replayClosed(dir, state, first, last);
  const file = join(dir, segmentName(last));
  const tail = await readSegment(file, (e) => state.apply(e));
  if (tail.droppedBytes > 0) log(`journal: dropped a torn record of ${tail.droppedBytes} bytes at the tail of ${file}`);
  // Leftovers of a checkpoint that was durable before the crash but not yet cleaned up after.
  await removeBefore(dir, first);
  return { state, checkpoint, segment: last, validBytes: tail.validBytes, entries: tail.entries };
}

/** Starts the checkpoint worker: compiled, or through tsx when running from the sources. */
function spawnWorker(workerData: unknown): Worker {
  const ts = import.meta.url.endsWith('.ts');
  const url = new URL(`./checkpoint-worker.${ts ? 'ts' : 'js'}`, import.meta.url);
  if (!ts) return new Worker(url, { workerData });
  const api = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(api)}).then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

export interface CheckpointReport {
  seq: number;
  bytes: number;
  files: number;
  ms: number;
  /** Longest delay of the master's event loop while the checkpoint ran, in ms. */
  maxPauseMs: number;
}

export class MetadataStore {
  private running: Promise<void> | null = null;
  private worker: Worker | null = null;
  private closing = false;
  private readonly checkpointEntries: number;
  private readonly checkpointBytes: number;
  private readonly log: (line: string) => void;
  /** The last checkpoint made, for tests and the benchmark. */
  lastCheckpoint: CheckpointReport | null = null;

  private constructor(
    readonly dir: string,
    readonly state: MetadataState,
    private journal: Journal,
    private checkpointSeq: number | null,
    private segment: number,
    options: MetadataStoreOptions,
  ) {
    this.checkpointEntries = options.checkpointEntries ?? DEFAULT_CHECKPOINT_ENTRIES;
    this.checkpointBytes = options.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
    this.log = options.log ?? (() => {});
  }

  static async open(options: MetadataStoreOptions): Promise<MetadataStore> {
    const log = options.log ?? (() => {});
    const started = performance.now();
    const loaded = await load(options.dir, log);
    const journal = await Journal.open(join(options.dir, segmentName(loaded.segment)), loaded.validBytes, loaded.entries);
    const where = loaded.checkpoint === null ? 'no checkpoint' : `checkpoint ${loaded.checkpoint}`;
    const stats = loaded.state.stats();
    log(`metadata: ${where}, journal up to segment ${loaded.segment} (${loaded.entries} entries in it): ` +
      `${stats.files} files, ${stats.chunks} chunks, loaded in ${Math.round(performance.now() - started)} ms`);
    return new MetadataStore(options.dir, loaded.state, journal, loaded.checkpoint, loaded.segment, options);
  }

  /** Resolves once `entry` (already applied to the state) is durable in the journal. */
  append(entry: Entry): Promise<void> {
    const done = this.journal.append(entry);
    if (this.running === null && !this.closing &&
      (this.journal.entries >= this.checkpointEntries || this.journal.bytes >= this.checkpointBytes)) {
      void this.checkpoint().catch((err) => this.log(`checkpoint failed, the journal keeps growing until the next try: ${(err as Error).message}`));
    }
    return done;
  }

  /** Runs a checkpoint now (or joins the one under way): rotate, compact in a worker, clean up. */
  checkpoint(): Promise<void> {
    this.running ??= this.runCheckpoint().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async runCheckpoint(): Promise<void> {
    const started = performance.now();
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    try {
      const base = this.checkpointSeq;
      const next = this.segment + 1;
      await this.journal.rotate(join(this.dir, segmentName(next)));
      this.segment = next;
      const result = await new Promise<{ bytes: number; files: number }>((resolve, reject) => {
        const worker = spawnWorker({ dir: this.dir, base, from: base ?? 0, to: next });
        this.worker = worker;
        worker.once('message', (m: { bytes: number; files: number } | { error: string }) =>
          'error' in m ? reject(new DfsError('IO_ERROR', m.error)) : resolve(m));
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new DfsError('INTERNAL_ERROR', `checkpoint worker exited with ${code}`)));
      }).finally(() => {
        void this.worker?.terminate();
        this.worker = null;
      });
      this.checkpointSeq = next;
      await removeBefore(this.dir, next);
      delay.disable();
      this.report(next, result.bytes, result.files, started, delay.max / 1e6);
    } finally {
      delay.disable();
    }
  }

  private report(seq: number, bytes: number, files: number, started: number, maxPauseMs: number): void {
    const ms = performance.now() - started;
    this.lastCheckpoint = { seq, bytes, files, ms, maxPauseMs };
    this.log(`checkpoint ${seq}: ${files} files, ${bytes} bytes in ${Math.round(ms)} ms; ` +
      `longest event-loop pause meanwhile ${maxPauseMs.toFixed(1)} ms`);
  }

  /**
   * Stops checkpointing, waits for the journal, and checkpoints the state in memory (it holds
   * exactly what the journal holds unless a write failed), so the next start replays nothing.
   */
  async close(): Promise<void> {
    this.closing = true;
    // A worker's checkpoint would be superseded at once: stop it; its temp file is harmless.
    await this.worker?.terminate();
    await this.running?.catch(() => {});
    await this.journal.drain();
    if (!this.journal.broken && this.journal.entries > 0) {
      try {
        const started = performance.now();
        const next = this.segment + 1;
        await this.journal.rotate(join(this.dir, segmentName(next)));
        this.segment = next;
        const bytes = await writeCheckpoint(this.dir, next, this.state);
        this.checkpointSeq = next;
        await removeBefore(this.dir, next);
        this.report(next, bytes, this.state.stats().files, started, 0);
      } catch (err) {
        this.log(`checkpoint at shutdown failed; the journal will be replayed at the next start: ${(err as Error).message}`);
      }
    }
    await this.journal.close();
  }
}
