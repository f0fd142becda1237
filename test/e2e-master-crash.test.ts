// The master killed with SIGKILL at random instants, with real processes: a master checkpointing
// every few dozen entries (so kills land before, during and after checkpoints) and three keepers,
// under a seeded workload of puts, deletes and renames. Every acknowledged operation must survive
// every restart; one cut off by a kill must be there whole or not at all; every file reads back
// byte for byte. Replay a run with DFS_CRASH_SEED=<seed printed> (kill instants vary with timing).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type DfsClient } from '../src/index.js';
import { seededRandom } from '../src/master/placement.js';
import { startDfs, waitFor, type DfsProcess } from './helpers/cluster.js';
import { readAllOf } from './helpers/data.js';

const WORKLOAD_MS = Number(process.env.DFS_CRASH_MS ?? 20_000);
const LANES = 3;
const OP_TIMEOUT_MS = 8_000;

/** Deterministic file content: `size` bytes from a seed. */
function content(seed: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed | 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

type Files = Map<string, Buffer>;

const alive = (p: DfsProcess) => p.child.exitCode === null && p.child.signalCode === null;

async function kill9(p: DfsProcess): Promise<void> {
  if (!alive(p)) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGKILL');
  await exited;
}

test('acknowledged puts, deletes and renames survive kill -9 of the master at any instant, checkpoints included', { timeout: 120_000 }, async (t) => {
  const seed = Number(process.env.DFS_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.diagnostic(`DFS_CRASH_SEED=${seed}`);
  console.log(`e2e-master-crash: DFS_CRASH_SEED=${seed}`);
  const random = seededRandom(seed);
  const dir = await mkdtemp(join(tmpdir(), 'dfs-crash-'));
  const masterDir = join(dir, 'master');
  const procs: DfsProcess[] = [];
  let master: DfsProcess | undefined;
  let client: DfsClient | undefined;
  t.after(async () => {
    await client?.close().catch(() => {});
    for (const p of [...procs, master]) if (p) await kill9(p);
    await rm(dir, { recursive: true, force: true });
  });

  const masterArgs = (listen: string) =>
    ['master', '--listen', listen, '--data', masterDir, '--dead-after', '1500', '--checkpoint-entries', '25'];
  master = await startDfs(masterArgs('127.0.0.1:0'), /listening on (\S+?),/);
  const address = master.address;
  for (let i = 0; i < 3; i++) {
    procs.push(await startDfs(
      ['keeper', '--master', address, '--listen', '127.0.0.1:0', '--data', join(dir, `keeper${i}`), '--zone', `z${i}`],
      /serving (\S+) from/,
    ));
  }
  client = await connect({ master: address, connectTimeoutMs: 2_000 });
  const liveKeepers = async () => (await client!.status()).keepers.filter((k) => k.alive).length;
  await waitFor('3 live keepers', async () => (await liveKeepers()) === 3);

  const stats = { acked: 0, cutOff: 0, appliedAnyway: 0, kills: 0, killsWithCheckpointUnfinished: 0, checkpoints: 0 };

  async function readBack(path: string): Promise<Buffer | undefined> {
    try {
      return await readAllOf(await client!.get(path, { signal: AbortSignal.timeout(OP_TIMEOUT_MS) }));
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return undefined;
      throw err;
    }
  }

  /** The content at each path once the master answers again. */
  async function observe(paths: string[]): Promise<(Buffer | undefined)[]> {
    for (let tries = 0; ; tries++) {
      try {
        return await Promise.all(paths.map(readBack));
      } catch (err) {
        if (tries > 100) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  const same = (a: Buffer | undefined, b: Buffer | undefined) => (a === undefined ? b === undefined : b !== undefined && a.equals(b));

  async function lane(n: number, deadline: number): Promise<void> {
    const random = seededRandom(seed + 1 + n);
    const files: Files = new Map();
    let counter = 0;
    while (Date.now() < deadline) {
      const roll = random();
      const names = [...files.keys()];
      let paths: string[];
      let run: (signal: AbortSignal) => Promise<unknown>;
      let after: (Buffer | undefined)[];
      if (roll < 0.55 || names.length === 0) {
        const path = names.length > 0 && random() < 0.2 ? names[Math.floor(random() * names.length)] : `/lane${n}/f${counter++}`;
        const data = content(Math.floor(random() * 2 ** 31), Math.floor(random() * 48 * 1024));
        paths = [path];
        after = [data];
        run = (signal) => client!.put(path, data, { signal, chunkSize: 16 * 1024 });
      } else if (roll < 0.75) {
        const path = names[Math.floor(random() * names.length)];
        paths = [path];
        after = [undefined];
        run = (signal) => client!.remove(path, { signal });
      } else {
        const src = names[Math.floor(random() * names.length)];
        const dst = `/lane${n}/r${counter++}`;
        paths = [src, dst];
        after = [undefined, files.get(src)];
        run = (signal) => client!.rename(src, dst, { signal });
      }
      const before = paths.map((p) => files.get(p));
      let acked = false;
      try {
        await run(AbortSignal.timeout(OP_TIMEOUT_MS));
        acked = true;
      } catch {
        // Cut off by a kill (or refused while keepers were not back yet): find out what happened.
      }
      let now: (Buffer | undefined)[];
      if (acked) {
        stats.acked++;
        now = after;
      } else {
        stats.cutOff++;
        now = await observe(paths);
        const whole = now.every((b, i) => same(b, after[i]));
        const none = now.every((b, i) => same(b, before[i]));
        assert.ok(whole || none, `seed ${seed}: an operation on ${paths.join(' -> ')} cut off by a kill was applied in part`);
        if (whole && !none) stats.appliedAnyway++;
      }
      paths.forEach((p, i) => (now[i] === undefined ? files.delete(p) : files.set(p, now[i]!)));
    }
    models[n] = files;
  }
  const models: Files[] = [];

  async function restartMaster(): Promise<void> {
    master = await startDfs(masterArgs(address), /listening on (\S+?),/);
  }

  async function killer(deadline: number): Promise<void> {
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300 + Math.floor(random() * 1200)));
      stats.checkpoints += (master!.log.join('').match(/checkpoint \d+:/g) ?? []).length;
      await kill9(master!);
      stats.kills++;
      const names = await readdir(masterDir);
      // More than one segment or a temp file: a checkpoint was under way, or one cut off earlier was not redone yet.
      if (names.filter((x) => x.startsWith('journal-')).length > 1 || names.some((x) => x.endsWith('.tmp'))) stats.killsWithCheckpointUnfinished++;
      await restartMaster();
    }
  }

  const deadline = Date.now() + WORKLOAD_MS;
  await Promise.all([killer(deadline), ...Array.from({ length: LANES }, (_, n) => lane(n, deadline))]);

  // Every acknowledged operation is there, and every file reads back byte for byte: after the
  // last kill, and again after one more kill -9 and a clean restart from what it left.
  const verify = async (when: string) => {
    await waitFor('the master answering', async () => (await liveKeepers()) === 3, 30_000);
    for (let n = 0; n < LANES; n++) {
      const listed = (await client!.list(`/lane${n}`).catch(() => [])).map((e) => `/lane${n}/${e.name}`).sort();
      assert.deepEqual(listed, [...models[n].keys()].sort(), `seed ${seed}, ${when}: lane ${n} lists other files than acknowledged`);
      for (const [path, data] of models[n]) {
        const got = await readBack(path);
        assert.ok(got !== undefined && got.equals(data), `seed ${seed}, ${when}: ${path} does not read back as written`);
      }
    }
  };
  await verify('after the workload');
  await kill9(master);
  await restartMaster();
  await verify('after a last kill -9 and restart');
  t.diagnostic(JSON.stringify(stats));
  assert.ok(stats.kills >= 5, `only ${stats.kills} kills in ${WORKLOAD_MS} ms`);
  assert.ok(stats.acked > 50, `only ${stats.acked} operations were acknowledged`);
});
