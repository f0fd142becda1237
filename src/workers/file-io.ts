// File sessions for chunk IO in a worker: a writer that appends and hashes in one step,
// and a reader that reads and hashes in one step, so bytes cross between threads once.

import { DfsError } from '../wire/errors.js';
import { PinnedSession, type SessionOptions } from './session.js';
import type { Pin, WorkerPool } from './pool.js';
import type { DigestRequest } from './protocol.js';

export interface FinishWriteOptions {
  /** Digest the data must have; otherwise CHECKSUM_MISMATCH and no rename. */
  expect?: string;
  /** fsync the file before closing it (default true). */
  fsync?: boolean;
  /** Rename the file here once the digest matched. */
  renameTo?: string;
  /** fsync this directory after the rename. */
  syncDir?: string;
}

/**
 * A new file (created exclusively) written in order by one worker that hashes what it writes.
 * The prefix given at open is written first and not hashed. Memory is bounded by what the caller
 * keeps in flight: await each write, or keep a small window of them.
 */
export class FileWriteSession extends PinnedSession {
  private written = 0;
  private finishing = false;

  constructor(
    pool: WorkerPool,
    pin: Pin,
    readonly path: string,
    opts: SessionOptions = {},
  ) {
    super(pool, pin, `write ${path}`, opts);
  }

  /** Creates the file and writes the prefix; called once by the pool. */
  async _open(prefix: Uint8Array | undefined): Promise<void> {
    await this.run(
      { op: 'open', sid: this.sid, mode: 'write', path: this.path },
      prefix === undefined ? {} : { data: prefix, field: 'prefix' },
    );
  }

  /** Hashed data bytes written (or queued) so far, prefix excluded. */
  get bytes(): number {
    return this.written;
  }

  /**
   * Appends and hashes `data`. Resolves once the bytes are taken (small pieces are batched), so
   * writes may be pipelined; a failure fails a later write or finish(). The caller must not change
   * `data` until the promise settles; with `transfer` see HashSession.update.
   */
  write(data: Uint8Array, opts: { transfer?: boolean } = {}): Promise<void> {
    if (this.finishing) return Promise.reject(new DfsError('INVALID_ARGUMENT', `${this.context}: write after finish`));
    this.written += data.byteLength;
    const taken = this.append(data, opts.transfer === true ? 'move-if-whole' : 'copy');
    taken.catch(() => undefined); // pipelined callers need not await: finish() reports the failure
    return taken;
  }

  /** fsyncs and closes the file, checks the digest, renames it into place; returns the digest. */
  async finish(opts: FinishWriteOptions = {}): Promise<{ digest: string; bytes: number }> {
    if (this.finishing) throw new DfsError('INVALID_ARGUMENT', `${this.context}: finish called twice`);
    this.finishing = true;
    const req: DigestRequest = {
      op: 'digest',
      sid: this.sid,
      fsync: opts.fsync ?? true,
      ...(opts.expect === undefined ? {} : { expect: opts.expect }),
      ...(opts.renameTo === undefined ? {} : { renameTo: opts.renameTo }),
      ...(opts.syncDir === undefined ? {} : { syncDir: opts.syncDir }),
    };
    const result = await this.finishWith(req);
    this.end();
    return { digest: result.digest!, bytes: result.bytes! };
  }

  /** Closes the file without finishing. The file stays; the caller removes it. Never fails. */
  abort(): Promise<void> {
    this.finishing = true;
    return this.drop();
  }
}

/** An existing file read in order from a position by one worker that hashes what it reads. */
export class FileReadSession extends PinnedSession {
  private readBytes = 0;
  private finishing = false;

  constructor(
    pool: WorkerPool,
    pin: Pin,
    readonly path: string,
  ) {
    super(pool, pin, `read ${path}`);
  }

  async _open(position: number): Promise<void> {
    await this.run({ op: 'open', sid: this.sid, mode: 'read', path: this.path, position });
  }

  get bytes(): number {
    return this.readBytes;
  }

  /** Reads up to `length` bytes; an empty buffer at the end of the file. */
  async read(length: number): Promise<Buffer> {
    if (this.finishing) throw new DfsError('INVALID_ARGUMENT', `${this.context}: read after finish`);
    const result = await this.run({ op: 'read', sid: this.sid, length });
    this.readBytes += result.length!;
    return Buffer.from(result.data!, 0, result.length!);
  }

  /** Closes the file and returns the digest of the bytes read; CHECKSUM_MISMATCH if it is not `expect`. */
  async finish(expect?: string): Promise<string> {
    if (this.finishing) throw new DfsError('INVALID_ARGUMENT', `${this.context}: finish called twice`);
    this.finishing = true;
    const result = await this.run(expect === undefined ? { op: 'digest', sid: this.sid } : { op: 'digest', sid: this.sid, expect });
    this.end();
    return result.digest!;
  }

  abort(): Promise<void> {
    this.finishing = true;
    return this.drop();
  }
}
