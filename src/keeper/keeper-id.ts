// A keeper's identity: 16 random bytes in hex, kept in `KEEPER_ID` of its data directory so a
// restarted keeper is recognised by the master as the same holder of the same chunks.

import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DfsError } from '../wire/errors.js';
import { fsError } from '../workers/errors.js';
import { fsyncDir } from '../util/fsync-dir.js';

export const KEEPER_ID_FILE = 'KEEPER_ID';
const ID_RE = /^[0-9a-f]{32}$/;

/**
 * Reads the keeper id of `dataDir`, creating it on first start. The file is written under a temp
 * name, fsynced, renamed into place and the directory fsynced, so a crash never leaves it half written.
 * The caller holds the directory's lock, so no other keeper races this.
 */
export async function loadOrCreateKeeperId(dataDir: string): Promise<string> {
  const path = join(dataDir, KEEPER_ID_FILE);
  try {
    const text = (await readFile(path, 'utf8')).trim();
    if (!ID_RE.test(text)) {
      throw new DfsError(
        'INVALID_ARGUMENT',
        `${path} does not hold a keeper id (32 lowercase hex digits): restore it from a backup, ` +
          `or delete it to start this keeper under a new identity (the master will see its chunks as new)`,
      );
    }
    return text;
  } catch (err) {
    if (err instanceof DfsError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(err, `read ${path}`);
  }
  const id = randomBytes(16).toString('hex');
  const temp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(temp, 'wx', 0o644);
    try {
      await fh.writeFile(`${id}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, path);
    await fsyncDir(dataDir);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw fsError(err, `write ${path}`);
  }
  return id;
}
