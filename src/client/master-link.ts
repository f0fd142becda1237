// Requests to the master over the cached connection, with the bounded retry of wire-spec §9.5:
// a request that provably was not processed (REFUSED_STREAM, or a connection found closed before
// the request left) is sent again on a fresh connection; reads are also retried after a dropped connection.

import { setTimeout as sleep } from 'node:timers/promises';
import { callForBuffer, type Body, type Operation } from '../transport/index.js';
import { DfsError } from '../wire/errors.js';
import type { Decoded, Schema } from '../wire/fields.js';
import { throwIfCancelled, type ConnectionCache } from './connections.js';

/** Attempts per master request. */
export const MASTER_ATTEMPTS = 3;

export interface MasterCallOptions {
  signal?: AbortSignal;
  body?: Body;
  /** True for requests that change nothing, so a lost reply may be asked for again. */
  idempotent?: boolean;
  /** Largest reply body accepted. Default 64 MiB. */
  maxBodyBytes?: number;
  /** Deadline for the reply header. Default 30 s. */
  timeoutMs?: number;
}

export class MasterLink {
  constructor(private readonly cache: ConnectionCache, readonly address: string) {}

  async call<Q extends Schema, R extends Schema>(
    operation: Operation<Q, R>, request: Decoded<Q>, options: MasterCallOptions = {},
  ): Promise<{ response: Decoded<R>; body: Buffer }> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= MASTER_ATTEMPTS; attempt++) {
      throwIfCancelled(options.signal, `${operation.name} was cancelled`);
      const conn = await this.cache.get(this.address, options.signal);
      try {
        return await callForBuffer(conn, operation, request, {
          signal: options.signal,
          timeoutMs: options.timeoutMs ?? 30_000,
          maxBodyBytes: options.maxBodyBytes ?? 64 * 1024 * 1024,
          ...(options.body === undefined ? {} : { body: options.body }),
        });
      } catch (err) {
        lastError = err;
        throwIfCancelled(options.signal, `${operation.name} was cancelled`);
        if (!(err instanceof DfsError)) throw err;
        const notProcessed = err.code === 'REFUSED_STREAM';
        const lostReply = err.code === 'CONNECTION_CLOSED' || err.code === 'IDLE_TIMEOUT';
        // A body is a stream that was consumed by the first attempt; it cannot be sent twice.
        const resendable = options.body === undefined || Buffer.isBuffer(options.body);
        if (!resendable || !(notProcessed || (lostReply && options.idempotent))) throw withMaster(err, this.address);
        this.cache.forget(this.address, conn);
        if (attempt < MASTER_ATTEMPTS) await sleep(backoffMs(attempt), undefined, { signal: options.signal }).catch(() => {});
      }
    }
    throw withMaster(lastError as DfsError, this.address);
  }
}

/** A growing, randomised delay between attempts (§9.5), so many clients do not retry in step. */
export function backoffMs(attempt: number, baseMs = 50, capMs = 2_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

function withMaster(err: DfsError, address: string): DfsError {
  if (err.code === 'UNKNOWN_OPERATION') {
    // Every master serves every master operation: whoever answers this is something else, most
    // often a keeper given as the master.
    return new DfsError('INVALID_ARGUMENT', `${address} is not a dfs master (it does not serve master operations; is it a keeper?)`, { cause: err });
  }
  if (err.code !== 'CONNECTION_CLOSED' && err.code !== 'IDLE_TIMEOUT' && err.code !== 'REFUSED_STREAM') return err;
  return new DfsError('UNAVAILABLE', `master ${address} is unavailable: ${err.message}`, { cause: err });
}
