// The lock that keeps two processes (keepers, masters) off one data directory: `LOCK` holds the owner's pid.
// A lock whose process is gone (kill -9, power loss) is stale and taken over.

import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { link, open, readdir, readFile, realpath, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DfsError } from '../wire/errors.js';
import { fsError } from '../workers/errors.js';
import { fsyncDir } from './fsync-dir.js';

/** Directories locked by this process (by real path): the pid in LOCK cannot tell them apart. */
const heldHere = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class DirLock {
  private released = false;

  private constructor(
    readonly dir: string,
    readonly path: string,
    private readonly content: string,
  ) {}

  /**
   * Locks `dir` (which must exist) or fails with UNAVAILABLE naming the owner. The lock file is
   * written under another name and hard-linked into place, so LOCK is never seen empty or half written.
   * Two processes breaking the same stale lock in the same instant could both win; starting two
   * keepers on one directory at the same moment after a crash is not guarded against.
   */
  static async acquire(dir: string): Promise<DirLock> {
    const real = await realpath(dir);
    const path = join(real, 'LOCK');
    if (heldHere.has(real)) {
      throw new DfsError('UNAVAILABLE', `data directory ${real} is already open in this process`, { retriable: false });
    }
    const content = `${process.pid}\n${hostname()}\n${new Date().toISOString()}\n`;
    const temp = join(real, `LOCK.${process.pid}.${randomBytes(4).toString('hex')}`);
    try {
      const fh = await open(temp, 'wx', 0o644);
      try {
        await fh.writeFile(content);
        await fh.sync();
      } finally {
        await fh.close();
      }
      for (let attempt = 0; ; attempt++) {
        try {
          await link(temp, path);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err;
        }
        let owner: string;
        try {
          owner = await readFile(path, 'utf8');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
          throw err;
        }
        const [pidText = '', host = '?', since = '?'] = owner.split('\n');
        const pid = Number(pidText);
        // Our own pid in a lock we do not hold is a previous incarnation (containers reuse pids).
        const live = Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid);
        if (live) {
          throw new DfsError(
            'UNAVAILABLE',
            `data directory ${real} is locked by process ${pid} on ${host} since ${since}: ` +
              `another dfs process is using it; stop that process, or delete ${path} if no such process runs`,
            { retriable: false },
          );
        }
        try {
          await unlink(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      await fsyncDir(real);
      // Temp files of attempts that died before their link (kill -9 at the wrong instant).
      for (const name of await readdir(real)) {
        if (name.startsWith('LOCK.') && join(real, name) !== temp) await unlink(join(real, name)).catch(() => undefined);
      }
    } catch (err) {
      if (err instanceof DfsError) throw err;
      throw fsError(err, `lock data directory ${real}`);
    } finally {
      await unlink(temp).catch(() => undefined);
    }
    heldHere.add(real);
    return new DirLock(real, path, content);
  }

  /** Removes LOCK if it is still ours. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.dir);
    try {
      if ((await readFile(this.path, 'utf8')) === this.content) await unlink(this.path);
    } catch {
      // Gone already: nothing to release.
    }
  }
}
