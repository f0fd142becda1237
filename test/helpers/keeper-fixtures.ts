// In-process keepers for tests: a temporary data directory, a keeper on a free port reporting to
// the given master, and client connections, each closed or removed when the test ends.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, parseAddress, type Address, type Connection } from '../../src/transport/index.js';
import { startKeeper, type KeeperHandle, type KeeperOptions } from '../../src/keeper/keeper.js';

/** What these helpers need of node:test's TestContext. */
export type Cleanup = { after(fn: () => Promise<void> | void): void };

export async function tempDir(t: Cleanup, prefix = 'dfs-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A keeper on 127.0.0.1 with a fast heartbeat and no log, closed when the test ends. */
export async function startTestKeeper(t: Cleanup, master: Address, extra: Partial<KeeperOptions> = {}): Promise<KeeperHandle> {
  const k = await startKeeper({
    master,
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: extra.dataDir ?? await tempDir(t, 'dfs-keeper-'),
    heartbeatMs: 50,
    log: () => {},
    ...extra,
  });
  t.after(() => k.close());
  return k;
}

/** A wire connection to `address`, destroyed when the test ends. */
export async function connectTo(t: Cleanup, address: string): Promise<Connection> {
  const conn = await connect(parseAddress(address));
  t.after(() => conn.destroy());
  return conn;
}
