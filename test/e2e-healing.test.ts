// Self-healing with real processes: keepers killed with SIGKILL, chunk files damaged on disk, keepers
// drained or put in maintenance, garbage collected, disks full. Every check reads the cluster the
// way an operator would (status, fsck, stat) and the bytes the way a user would (get).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { createRng } from './helpers/fuzz.js';
import { runDfs, startCluster, waitFor, type Cluster } from './helpers/cluster.js';
import type { DfsClient } from '../src/index.js';
import { replicaData, storedReplica, storedReplicas } from './helpers/stored-replicas.js';

const CHUNK = 256 * 1024;

async function readBack(client: DfsClient, path: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const piece of await client.get(path)) parts.push(piece as Buffer);
  return Buffer.concat(parts);
}

/** Ids of the chunks a keeper holds on disk, in files or packs (not temp files, not quarantined ones). */
async function chunkFilesOf(cluster: Cluster, index: number): Promise<Set<string>> {
  return new Set((await storedReplicas(join(cluster.dir, `keeper${index}`))).map((r) => r.id));
}

async function keeperIdOf(cluster: Cluster, index: number): Promise<string> {
  const address = cluster.keepers[index]!.address;
  const k = (await cluster.client.status()).keepers.find((x) => x.address === address);
  assert.ok(k, `keeper ${index} at ${address} is registered`);
  return k.id;
}

/** Every chunk of every file has `rf` replicas, all on live keepers. */
async function fullyReplicated(client: DfsClient, paths: readonly string[], rf: number): Promise<boolean> {
  for (const p of paths) {
    for (const c of (await client.stat(p)).chunks) {
      if (c.replicas.filter((r) => r.alive).length < rf) return false;
    }
  }
  return true;
}

async function putFiles(cluster: Cluster, seed: number, count: number, sizes: (i: number) => number): Promise<Map<string, Buffer>> {
  const rng = createRng(seed);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const data = rng.bytes(sizes(i));
    await cluster.client.put(`/heal/f${i}`, data, { chunkSize: CHUNK });
    files.set(`/heal/f${i}`, data);
  }
  return files;
}

test('a keeper killed with SIGKILL is declared dead in 3 s and its chunks are copied back to full replication; when it returns, extra copies are trimmed and collected', { timeout: 180_000 }, async (t) => {
  const cluster = await startCluster({ keepers: 4, masterArgs: ['--gc-grace', '2s'] });
  t.after(() => cluster.stop());
  const { client } = cluster;
  const files = await putFiles(cluster, 41, 6, (i) => CHUNK * (i + 1) + 17 * i);
  const paths = [...files.keys()];
  const victim = 1;
  const victimId = await keeperIdOf(cluster, victim);
  const held = await chunkFilesOf(cluster, victim);
  assert.ok(held.size > 0, 'the victim holds chunks');

  const killedAt = Date.now();
  cluster.keepers[victim]!.child.kill('SIGKILL');
  await waitFor('the killed keeper to be declared dead', async () =>
    (await client.status()).keepers.find((k) => k.id === victimId)?.alive === false, 10_000);
  const detectMs = Date.now() - killedAt;
  assert.ok(detectMs <= 3_000 + 500, `declared dead after ${detectMs} ms (dead-after 1.5 s, polled every 100 ms)`);

  // Stated bound: on loopback the copies of a few MiB take well under a second; 30 s leaves room for a loaded CI machine.
  await waitFor('every chunk back at 3 live replicas', async () =>
    (await client.status()).underReplicated === 0 && (await fullyReplicated(client, paths, 3)), 30_000);
  const st = await client.status();
  assert.ok(st.repaired >= held.size, `${st.repaired} chunks repaired, the victim held ${held.size}`);
  for (const [p, data] of files) assert.ok((await readBack(client, p)).equals(data), `${p} reads back byte-identical`);
  const fsck = await runDfs(['fsck', '/'], cluster.master.address);
  assert.equal(fsck.code, 0, fsck.stderr);
  assert.match(fsck.stdout.toString(), /6 file\(s\): 6 healthy/);

  // Back from the dead: its copies are now one too many; the extra ones go, and are deleted from disk.
  await cluster.startKeeper(victim);
  await waitFor('every chunk trimmed back to 3 replicas', async () => {
    for (const p of paths) for (const c of (await client.stat(p)).chunks) if (c.replicas.length !== 3) return false;
    return true;
  }, 30_000);
  await waitFor('trimmed copies deleted from disk', async () => {
    let total = 0;
    for (let i = 0; i < 4; i++) total += (await chunkFilesOf(cluster, i)).size;
    let expected = 0;
    for (const p of paths) expected += (await client.stat(p)).chunks.length * 3;
    return total === expected && (await client.status()).garbage === 0;
  }, 30_000);
  for (const [p, data] of files) assert.ok((await readBack(client, p)).equals(data));

  // Delete: after the grace period no byte of the file remains on any keeper.
  const gone = (await client.stat(paths[5]!)).chunks.map((c) => c.id);
  await client.remove(paths[5]!);
  await waitFor('the deleted file\'s chunks removed from every keeper', async () => {
    for (let i = 0; i < 4; i++) {
      const held = await chunkFilesOf(cluster, i);
      if (gone.some((id) => held.has(id))) return false;
    }
    return true;
  }, 30_000);
  await assert.rejects(client.stat(paths[5]!), { code: 'NOT_FOUND' });
});

test('bytes overwritten inside chunk files on two keepers are never returned, and the bad replicas are replaced', { timeout: 180_000 }, async (t) => {
  const cluster = await startCluster({ keepers: 4, masterArgs: ['--gc-grace', '2s'], keeperArgs: () => ['--scrub-rate', '64MiB', '--scrub-every', '2s'] });
  t.after(() => cluster.stop());
  const { client } = cluster;
  const files = await putFiles(cluster, 77, 4, (i) => CHUNK * 2 + 1000 * i);
  const paths = [...files.keys()];
  const rng = createRng(7);
  const damaged: { keeper: number; id: string }[] = [];
  for (const keeper of [0, 2]) {
    const held = [...(await chunkFilesOf(cluster, keeper))].sort();
    for (const id of held.slice(0, 2)) {
      const r = await storedReplica(join(cluster.dir, `keeper${keeper}`), id);
      const fh = await open(r.file, 'r+');
      // The data itself, not its header. Flip bytes so the content surely changes.
      const at = rng.int(r.dataOffset, r.dataOffset + r.size - 8);
      const buf = Buffer.alloc(8);
      await fh.read(buf, 0, 8, at);
      for (let i = 0; i < 8; i++) buf[i] = buf[i]! ^ 0xff;
      await fh.write(buf, 0, 8, at);
      await fh.close();
      damaged.push({ keeper, id });
    }
  }
  // Reads fail over past damaged copies: what comes back is always what was written.
  for (const [p, data] of files) assert.ok((await readBack(client, p)).equals(data), `${p} reads back byte-identical`);
  await waitFor('the damaged replicas quarantined and replaced', async () => {
    for (const { keeper, id } of damaged) {
      const q = await readdir(join(cluster.dir, `keeper${keeper}`, 'quarantine')).catch(() => [] as string[]);
      if (!q.some((name) => name.startsWith(id))) return false;
    }
    if ((await client.status()).underReplicated !== 0 || !(await fullyReplicated(client, paths, 3))) return false;
    // ...and the master has heard of every quarantine: each replica it lists is a chunk file on disk.
    for (const p of paths) {
      for (const c of (await client.stat(p)).chunks) {
        for (const r of c.replicas) {
          const i = cluster.keepers.findIndex((k) => k.address === r.address);
          if (!(await chunkFilesOf(cluster, i)).has(c.id)) return false;
        }
      }
    }
    return true;
  }, 60_000).catch(async (err: Error) => {
    const q = await Promise.all([0, 2].map((k) => readdir(join(cluster.dir, `keeper${k}`, 'quarantine')).catch(() => [])));
    throw new Error(`${err.message}\ndamaged ${JSON.stringify(damaged)}\nquarantine ${JSON.stringify(q)}\n` +
      `status ${JSON.stringify(await client.status())}\n${cluster.master.log.join('').slice(-4000)}`);
  });
  const fsck = await runDfs(['fsck', '/', '--json'], cluster.master.address);
  assert.equal(fsck.code, 0, fsck.stderr);
  assert.equal(JSON.parse(fsck.stdout.toString()).healthy, 4);
  for (const [p, data] of files) assert.ok((await readBack(client, p)).equals(data));
  // Every replica the master lists is a good one: read each straight from its keeper.
  for (const p of paths) {
    for (const c of (await client.stat(p)).chunks) {
      for (const r of c.replicas) {
        const i = cluster.keepers.findIndex((k) => k.address === r.address);
        const bytes = await replicaData(await storedReplica(join(cluster.dir, `keeper${i}`), c.id));
        const { createHash } = await import('node:crypto');
        assert.equal(createHash('sha256').update(bytes).digest('hex'), c.sha256, `replica of ${c.id} on keeper ${i}`);
      }
    }
  }
});

test('maintenance starts no repair; drain moves every replica off and reports safe to remove; a new keeper receives data; fsck exits 1 on missing data', { timeout: 180_000 }, async (t) => {
  const cluster = await startCluster({ keepers: 4, masterArgs: ['--gc-grace', '1s', '--balance-interval', '0'] });
  t.after(() => cluster.stop());
  const { client } = cluster;
  const files = await putFiles(cluster, 5, 4, (i) => CHUNK * 3 + i);
  const paths = [...files.keys()];

  const m = await runDfs(['keeper', 'maintenance', cluster.keepers[3]!.address, '--for', '5m'], cluster.master.address);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stdout.toString(), /in maintenance until/);
  const before = (await client.status()).repaired;
  cluster.keepers[3]!.child.kill('SIGKILL');
  const id3 = (await client.status()).keepers.find((k) => k.address === cluster.keepers[3]!.address)!.id;
  await waitFor('keeper 3 dead', async () => (await client.status()).keepers.find((k) => k.id === id3)?.alive === false);
  await new Promise((r) => setTimeout(r, 3000));
  const during = await client.status();
  assert.equal(during.repaired, before, 'no copies for a keeper in maintenance');
  assert.equal(during.repairsInFlight, 0);
  assert.equal(during.underReplicated, 0);
  await cluster.startKeeper(3);
  assert.equal((await runDfs(['keeper', 'normal', id3], cluster.master.address)).code, 0);

  const drainId = await keeperIdOf(cluster, 0);
  const d = await runDfs(['keeper', 'drain', drainId.slice(0, 8)], cluster.master.address);
  assert.equal(d.code, 0, d.stderr);
  await waitFor('keeper 0 drained', async () => (await client.status()).keepers.find((k) => k.id === drainId)?.drained === true, 60_000);
  for (const p of paths) {
    for (const c of (await client.stat(p)).chunks) {
      assert.equal(c.replicas.filter((r) => r.alive).length, 3);
      assert.ok(!c.replicas.some((r) => r.id === drainId), 'nothing left on the drained keeper');
    }
  }
  const text = (await runDfs(['status'], cluster.master.address)).stdout.toString();
  assert.match(text, /drained: safe to remove/);
  await waitFor('drained keeper emptied on disk', async () => (await chunkFilesOf(cluster, 0)).size === 0, 30_000);
  for (const [p, data] of files) assert.ok((await readBack(client, p)).equals(data));
  // Safe to remove: stop it and forget it. A running keeper, or one that holds data, is refused.
  const alive = await runDfs(['keeper', 'forget', drainId], cluster.master.address);
  assert.equal(alive.code, 2);
  assert.match(alive.stderr, /is alive: stop it/);
  const holder = await runDfs(['keeper', 'forget', await keeperIdOf(cluster, 1)], cluster.master.address);
  assert.equal(holder.code, 2);
  cluster.keepers[0]!.child.kill('SIGKILL');
  await waitFor('the drained keeper dead', async () => (await client.status()).keepers.find((k) => k.id === drainId)?.alive === false);
  const forget = await runDfs(['keeper', 'forget', drainId], cluster.master.address);
  assert.equal(forget.code, 0, forget.stderr);
  assert.equal((await client.status()).keepers.some((k) => k.id === drainId), false, 'gone from status');

  // A keeper joining a running cluster gets new data.
  const joined = await cluster.startKeeper(4);
  await waitFor('the new keeper alive', async () => (await client.status()).keepers.some((k) => k.address === joined.address && k.alive));
  const rng = createRng(9);
  for (let i = 0; i < 6; i++) await client.put(`/new/f${i}`, rng.bytes(CHUNK * 2), { chunkSize: CHUNK });
  let onNew = 0;
  for (let i = 0; i < 6; i++) for (const c of (await client.stat(`/new/f${i}`)).chunks) if (c.replicas.some((r) => r.address === joined.address)) onNew++;
  assert.ok(onNew > 0, 'the new keeper holds replicas of new files');

  // A file whose only replica is on a dead keeper is missing: fsck says so and exits 1.
  await client.put('/single', rng.bytes(1000), { replication: 1 });
  const where = (await client.stat('/single')).chunks[0]!.replicas[0]!.address;
  const idx = cluster.keepers.findIndex((k) => k.address === where);
  cluster.keepers[idx]!.child.kill('SIGKILL');
  await waitFor('its keeper dead', async () => !(await client.status()).keepers.find((k) => k.address === where)?.alive);
  const f = await runDfs(['fsck', '/'], cluster.master.address);
  assert.equal(f.code, 1);
  assert.match(f.stdout.toString(), /MISSING \/single/);
  assert.match(f.stdout.toString(), /status: CORRUPT/);
});

test('full keepers get no new chunks; a full cluster fails a put with NO_SPACE and damages nothing stored', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster({ keepers: 3, keeperArgs: () => ['--capacity', '3MiB'] });
  t.after(() => cluster.stop());
  const { client } = cluster;
  const rng = createRng(3);
  const first = rng.bytes(CHUNK * 4);
  await client.put('/first', first, { chunkSize: CHUNK });
  let failure: unknown = null;
  try {
    for (let i = 0; i < 20; i++) await client.put(`/fill${i}`, rng.bytes(CHUNK * 2), { chunkSize: CHUNK });
  } catch (err) {
    failure = err;
  }
  assert.ok(failure, 'filling 3 MiB keepers with 10 MiB at replication 3 must fail');
  assert.equal((failure as { code?: string }).code, 'NO_SPACE', String(failure));
  assert.ok((await readBack(client, '/first')).equals(first), 'what was stored before is intact');
  const st = await client.status();
  for (const k of st.keepers) assert.ok(k.used <= k.capacity, `keeper ${k.address} used ${k.used} of ${k.capacity}`);
});

test('dfs balance moves replicas onto a new, empty keeper, copying before dropping, and every file still reads back', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster({ keepers: 3, masterArgs: ['--gc-grace', '1s', '--balance-interval', '0'], keeperArgs: () => ['--capacity', '16MiB'] });
  t.after(() => cluster.stop());
  const { client } = cluster;
  const files = await putFiles(cluster, 21, 6, () => CHUNK * 4);
  const paths = [...files.keys()];
  const fresh = await cluster.startKeeper(3);
  await waitFor('the new keeper alive', async () => (await client.status()).keepers.some((k) => k.address === fresh.address && k.alive));
  const bad = await runDfs(['balance', '--threshold', '150'], cluster.master.address);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--threshold must be a whole percentage from 0 to 100/);
  const r = await runDfs(['balance', '--threshold', '5'], cluster.master.address);
  assert.equal(r.code, 0, r.stderr);
  const moves = Number(/(\d+) move\(s\) scheduled/.exec(r.stdout.toString())?.[1]);
  assert.ok(moves > 0, r.stdout.toString());
  await waitFor('the new keeper holding moved replicas, the old copies collected', async () => {
    let onFresh = 0;
    let listed = 0;
    for (const p of paths) {
      for (const c of (await client.stat(p)).chunks) {
        listed += c.replicas.length;
        if (c.replicas.some((x) => x.address === fresh.address)) onFresh++;
        if (c.replicas.filter((x) => x.alive).length !== 3) return false;
      }
    }
    let onDisk = 0;
    for (let i = 0; i < 4; i++) onDisk += (await chunkFilesOf(cluster, i)).size;
    return onFresh > 0 && onDisk === listed;
  }, 60_000);
  for (const [p, data] of files) assert.ok((await readBack(client, p)).equals(data));
});

test('a put right after the master restarts waits for the keepers to report in instead of failing', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster({ keepers: 3, deadAfterMs: 3000 });
  t.after(() => cluster.stop());
  const { client } = cluster;
  const rng = createRng(12);
  const before = rng.bytes(CHUNK + 5);
  await client.put('/before', before, { chunkSize: CHUNK });
  await cluster.restartMaster();
  // The master knows three keepers from its metadata, none has reported yet: the writer waits.
  const after = rng.bytes(CHUNK * 2 + 9);
  await client.put('/after', after, { chunkSize: CHUNK });
  assert.ok((await readBack(client, '/after')).equals(after));
  assert.ok((await readBack(client, '/before')).equals(before));
  assert.equal((await client.stat('/after')).chunks.every((c) => c.replicas.length >= 2), true);
});
