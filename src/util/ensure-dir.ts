// Creates a directory and its missing parents, with errors that say which path failed and why.
// Not mkdir({ recursive: true }): on some filesystems (such as /proc) that loops for ever when the
// kernel answers ENOENT for the child and EEXIST for the parent.

import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DfsError } from '../wire/errors.js';

const MAX_DEPTH = 128;

function failure(path: string, err: NodeJS.ErrnoException): DfsError {
  const why = err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied'
    : err.code === 'ENOTDIR' ? 'a parent is not a directory'
    : err.code === 'EROFS' ? 'the filesystem is read-only'
    : err.code === 'ENOSPC' ? 'no space left on the device'
    : err.code ?? err.message;
  return new DfsError(err.code === 'ENOSPC' ? 'NO_SPACE' : 'IO_ERROR', `cannot create directory ${path}: ${why}`, { cause: err });
}

export async function ensureDir(path: string, depth = 0): Promise<void> {
  try {
    await mkdir(path);
    return;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') {
      const st = await stat(path).catch(() => null);
      if (st?.isDirectory()) return;
      throw new DfsError('INVALID_ARGUMENT', `${path} exists and is not a directory`);
    }
    const parent = dirname(path);
    if (e.code !== 'ENOENT' || parent === path || depth >= MAX_DEPTH) throw failure(path, e);
    await ensureDir(parent, depth + 1);
  }
  // The parents exist now; one more try, and no further recursion whatever it answers.
  try {
    await mkdir(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST' && (await stat(path).catch(() => null))?.isDirectory()) return;
    throw failure(path, e);
  }
}
