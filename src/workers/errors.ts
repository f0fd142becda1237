// Turns file system errors (from a worker or from node:fs on the event loop) into DfsErrors with registry codes.

import { DfsError, ERRORS, type ErrorCode } from '../wire/errors.js';
import type { WireSafeError } from './protocol.js';

const SPACE = new Set(['ENOSPC', 'EDQUOT']);

/**
 * `context` says what was being done ("write chunk 4f2a…"), so the message reads as a sentence:
 * "write chunk 4f2a…: disk full (ENOSPC)". ENOSPC and EDQUOT become NO_SPACE, ENOENT NOT_FOUND,
 * other errno codes IO_ERROR with the code in the message; anything else is a bug: INTERNAL_ERROR.
 */
export function fsError(err: unknown, context: string): DfsError {
  if (err instanceof DfsError) {
    return new DfsError(err.code, `${context}: ${err.message}`, { cause: err, retriable: err.retriable });
  }
  const e = err as Partial<WireSafeError> | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const detail = typeof e?.message === 'string' ? e.message : String(err);
  if (e?.dfs === true && code !== undefined && code in ERRORS) {
    return new DfsError(code as ErrorCode, `${context}: ${detail}`, { cause: err });
  }
  if (code !== undefined && SPACE.has(code)) {
    return new DfsError('NO_SPACE', `${context}: disk full (${code})`, { cause: err });
  }
  if (code === 'ENOENT') {
    return new DfsError('NOT_FOUND', `${context}: no such file (ENOENT${e?.path ? ` ${e.path}` : ''})`, { cause: err });
  }
  if (code !== undefined && /^E[A-Z0-9]+$/.test(code)) {
    // node's own messages already start with the code: "EIO: i/o error, write".
    const text = detail.startsWith(code) ? detail : `${code}: ${detail}`;
    return new DfsError('IO_ERROR', `${context}: ${text}`, { cause: err });
  }
  return new DfsError('INTERNAL_ERROR', `${context}: ${detail}`, { cause: err });
}
