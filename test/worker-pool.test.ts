// The worker pool hashes and does chunk IO off the event loop: its digests must be node:crypto's
// whatever the piece boundaries, its limits must hold, and it must never keep a keeper alive or leak.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { DfsError } from '../src/wire/errors.js';
import { WorkerPool, fsError, resolveWorkerScript } from '../src/workers/index.js';
import { createRng } from './helpers/fuzz.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SEED = Number(process.env.DFS_SEED ?? Math.floor(Math.random() * 2 ** 32));

/** Seeded bytes and integers, so a failure can be replayed with DFS_SEED. */
const rng = (seed: number) => createRng(seed);

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-pool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs a script in a fresh node process; resolves with its exit code, output and run time. */
function runNode(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; signal: string | null; out: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, ms: Date.now() - started });
    });
  });
}

const pool = new WorkerPool();
after(() => pool.close());

test(`sha256 of whole buffers equals node:crypto's for sizes from 0 to 3 MiB (seed ${SEED})`, async () => {
  const r = rng(SEED);
  const sizes = [0, 1, 55, 56, 63, 64, 65, 4095, 4096, 65536, 3 * 1024 * 1024 + 7];
  for (let i = 0; i < 8; i++) sizes.push(r.int(0, 200_000));
  const buffers = sizes.map((n) => r.bytes(n));
  const digests = await Promise.all(buffers.map((b) => pool.sha256(b)));
  digests.forEach((d, i) => assert.equal(d, sha(buffers[i]!), `size ${sizes[i]} (seed ${SEED})`));
});

test('a hash session gives the same digest whatever the piece boundaries', async () => {
  // The network splits a chunk anywhere; the hash must not depend on where.
  const data = rng(SEED).bytes(300);
  const want = sha(data);
  for (let a = 0; a <= data.length; a += 3) {
    const cuts = [a, Math.min(data.length, a + 1), Math.min(data.length, a + 100)].map((b) => {
      const h = pool.hashSession();
      // Updates are not awaited: a session runs its requests in call order.
      void h.update(data.subarray(0, a));
      void h.update(data.subarray(a, b));
      void h.update(data.subarray(b));
      return h.digest();
    });
    for (const d of await Promise.all(cuts)) assert.equal(d, want, `split at ${a}`);
  }
});

test(`a hash session over random pieces of random sizes matches node:crypto (seed ${SEED})`, async () => {
  const r = rng(SEED ^ 0x5eed);
  // Small pieces are batched, big ones sent as they are: every batch size must give the same digest.
  for (const batchBytes of [0, 1000, undefined]) {
    for (let round = 0; round < 3; round++) {
      const data = r.bytes(r.int(0, 2 * 1024 * 1024));
      const h = pool.hashSession({ batchBytes });
      const pipelined = round === 2;
      for (let at = 0; at < data.length; ) {
        const n = Math.min(data.length - at, r.int(0, r.int(0, 1) ? 2000 : 300 * 1024));
        const taken = h.update(data.subarray(at, at + n));
        if (!pipelined) await taken;
        at += n;
      }
      assert.equal(h.bytes, data.length);
      assert.equal(await h.digest(), sha(data), `batch ${batchBytes}, round ${round} (seed ${SEED})`);
    }
  }
  const empty = pool.hashSession();
  assert.equal(await empty.digest(), sha(Buffer.alloc(0)), 'a session with no update hashes the empty string');
});

test('transfer moves a buffer that owns its memory and copies anything else', async () => {
  const owned = Buffer.allocUnsafeSlow(4096).fill(1);
  const want = sha(owned);
  assert.equal(await pool.sha256(owned, { transfer: true }), want);
  assert.equal(owned.length, 0, 'the ArrayBuffer moved to the worker instead of being copied');

  const big = Buffer.alloc(8192, 2);
  const slice = big.subarray(100, 4196);
  assert.equal(await pool.sha256(slice, { transfer: true }), sha(slice));
  assert.equal(big.length, 8192, 'a slice cannot move without taking its neighbours: copied');

  // Small Buffers share node's pool, which node marks untransferable: the pool falls back to a copy.
  const pooled = Buffer.from('abc');
  assert.equal(await pool.sha256(pooled, { transfer: true }), sha(Buffer.from('abc')));
  assert.equal(pooled.toString(), 'abc');

  const plain = Buffer.alloc(5000, 3);
  await pool.sha256(plain);
  assert.equal(plain.length, 5000, 'without transfer the caller keeps its buffer');
});

test('a full queue refuses new work with UNAVAILABLE instead of buffering without bound', async (t) => {
  const small = new WorkerPool({ size: 1, maxQueue: 2 });
  t.after(() => small.close());
  const data = Buffer.alloc(4 * 1024 * 1024, 9);
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => small.sha256(data)));
  const refused = results.filter((r) => r.status === 'rejected');
  const done = results.filter((r) => r.status === 'fulfilled');
  // One running plus two waiting at most; the rest refused at once.
  assert.ok(done.length >= 2 && done.length <= 3, `${done.length} ran`);
  for (const r of refused) {
    const err = (r as PromiseRejectedResult).reason as DfsError;
    assert.ok(err instanceof DfsError);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.retriable, true);
    assert.match(err.message, /queue is full/);
  }
  assert.equal(small.stats().queued, 0);
  assert.equal(await small.sha256(data), sha(data), 'the pool works again once the queue drained');
});

test('file errors reach the caller as dfs codes: ENOENT is NOT_FOUND, other errno codes IO_ERROR, bad bytes CHECKSUM_MISMATCH', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(pool.openFileReader(join(dir, 'missing')), (e: DfsError) => e.code === 'NOT_FOUND' && /ENOENT/.test(e.message));

  const path = join(dir, 'f');
  await writeFile(path, 'hello');
  await assert.rejects(pool.openFileWriter(path), (e: DfsError) => e.code === 'IO_ERROR' && /EEXIST/.test(e.message));

  const wrong = sha(Buffer.from('jello'));
  await assert.rejects(
    pool.readVerified(path, { offset: 0, length: 5, sha256: wrong }),
    (e: DfsError) => e.code === 'CHECKSUM_MISMATCH',
  );
  await assert.rejects(
    pool.readVerified(path, { offset: 0, length: 5, sha256: sha(Buffer.from('hello')), fileSize: 6 }),
    (e: DfsError) => e.code === 'CHECKSUM_MISMATCH' && /5 bytes, expected 6/.test(e.message),
  );
  const ok = await pool.readVerified(path, { offset: 1, length: 4, sha256: sha(Buffer.from('ello')) });
  assert.equal(ok.toString(), 'ello');

  // ENOSPC cannot be caused portably; its mapping is checked on the error a worker would send.
  const full = fsError({ message: 'ENOSPC: no space left on device, write', code: 'ENOSPC', syscall: 'write' }, 'write chunk 00');
  assert.equal(full.code, 'NO_SPACE');
  assert.match(full.message, /^write chunk 00: disk full \(ENOSPC\)$/);
  const eio = fsError({ message: 'EIO: i/o error, read', code: 'EIO', syscall: 'read' }, 'read chunk 00');
  assert.equal(eio.code, 'IO_ERROR');
  assert.match(eio.message, /EIO/);
});

test('a file writer appends after its unhashed prefix, fsyncs, checks the digest and renames', async (t) => {
  const dir = await tempDir(t);
  const data = rng(SEED).bytes(100_000);
  const w = await pool.openFileWriter(join(dir, 'tmp'), { prefix: Buffer.from('HEADER') });
  for (let at = 0; at < data.length; at += 30_000) await w.write(data.subarray(at, at + 30_000));
  const done = await w.finish({ expect: sha(data), renameTo: join(dir, 'final'), syncDir: dir });
  assert.deepEqual(done, { digest: sha(data), bytes: data.length });
  assert.deepEqual(await readFile(join(dir, 'final')), Buffer.concat([Buffer.from('HEADER'), data]));

  const bad = await pool.openFileWriter(join(dir, 'tmp2'));
  await bad.write(data);
  await assert.rejects(
    bad.finish({ expect: sha(Buffer.alloc(1)), renameTo: join(dir, 'final2') }),
    (e: DfsError) => e.code === 'CHECKSUM_MISMATCH',
  );
  await assert.rejects(readFile(join(dir, 'final2')), /ENOENT/, 'a mismatch is never renamed into place');

  const r = await pool.openFileReader(join(dir, 'final'), 6);
  const pieces: Buffer[] = [];
  for (let p = await r.read(40_000); p.length > 0; p = await r.read(40_000)) pieces.push(p);
  assert.deepEqual(Buffer.concat(pieces), data);
  assert.equal(await r.finish(sha(data)), sha(data));
  assert.equal(pool.stats().sessions, 0, 'finished sessions release their worker');
});

test('writeFile creates, writes and renames a small file in one request, and never overwrites an existing file', async (t) => {
  // Small chunks are made durable by this one request; O_EXCL keeps it from writing into a file it did not create.
  const dir = await tempDir(t);
  const data = rng(SEED).bytes(5000);
  await pool.writeFile(join(dir, 'tmp'), Buffer.from(data), { renameTo: join(dir, 'final'), syncDir: dir });
  assert.deepEqual(await readFile(join(dir, 'final')), data);
  await assert.rejects(readFile(join(dir, 'tmp')), /ENOENT/, 'the temp name is gone after the rename');

  await writeFile(join(dir, 'taken'), 'old');
  await assert.rejects(pool.writeFile(join(dir, 'taken'), Buffer.from(data)), (e: DfsError) => e.code === 'IO_ERROR' && /EEXIST/.test(e.message));
  assert.equal(await readFile(join(dir, 'taken'), 'utf8'), 'old');
});

test('a worker that dies fails the requests it held and is replaced', async (t) => {
  const p = new WorkerPool({ size: 1 });
  t.after(() => p.close());
  await p.sha256(Buffer.from('warm up'));
  const h = p.hashSession();
  await h.update(Buffer.from('abc'));
  // Reach inside to kill the thread, as an out-of-memory abort would.
  const slot = (p as unknown as { slots: { worker: { terminate(): Promise<number> } }[] }).slots[0]!;
  await slot.worker.terminate();
  await assert.rejects(h.digest(), (e: DfsError) => e.code === 'INTERNAL_ERROR' && /session is lost|exited/.test(e.message));
  assert.equal(await p.sha256(Buffer.from('after')), sha(Buffer.from('after')));
});

test('the pool never keeps the process alive: idle workers are unref-ed, close() ends them', async (t) => {
  const dir = await tempDir(t);
  const poolUrl = pathToFileURL(join(ROOT, 'src/workers/pool.ts')).href;
  // Not awaited at top level: only the running job may hold the process until its answer arrived.
  const idle = join(dir, 'idle.mts');
  await writeFile(
    idle,
    `import { WorkerPool } from ${JSON.stringify(poolUrl)};
     const pool = new WorkerPool({ size: 2 });
     pool.sha256(Buffer.from('x')).then((d) => console.log('digest', d));`,
  );
  const closed = join(dir, 'closed.mts');
  await writeFile(
    closed,
    `import { WorkerPool } from ${JSON.stringify(poolUrl)};
     const pool = new WorkerPool({ size: 2 });
     const s = pool.hashSession();
     await s.update(Buffer.from('x'));
     await pool.close();
     await pool.sha256(Buffer.from('x')).catch((e) => console.log('after close', e.code));
     console.log('closed');`,
  );
  const [a, b] = await Promise.all([runNode(['--import', 'tsx', idle]), runNode(['--import', 'tsx', closed])]);
  assert.equal(a.code, 0, a.out);
  assert.match(a.out, new RegExp(`digest ${sha(Buffer.from('x'))}`));
  assert.equal(b.code, 0, b.out);
  assert.match(b.out, /after close UNAVAILABLE\s+closed/);
});

test('resolveWorkerScript prefers the sibling with its own extension and falls back to the other', async (t) => {
  const dir = await tempDir(t);
  const base = (name: string): URL => pathToFileURL(join(dir, name));
  await writeFile(join(dir, 'worker.ts'), '');
  assert.equal(resolveWorkerScript(base('pool.ts')).typescript, true);
  assert.equal(resolveWorkerScript(base('pool.js')).typescript, true, 'only the .ts exists');
  await writeFile(join(dir, 'worker.js'), '');
  assert.equal(resolveWorkerScript(base('pool.js')).typescript, false);
  assert.equal(resolveWorkerScript(base('pool.ts')).typescript, true, 'a stale .js beside the sources is ignored');
  await rm(join(dir, 'worker.ts'));
  await rm(join(dir, 'worker.js'));
  assert.throws(() => resolveWorkerScript(base('pool.js')), (e: DfsError) => e.code === 'INTERNAL_ERROR');
});

test('compiled to JavaScript, the pool starts its worker under plain node without tsx', async (t) => {
  // dist/ runs without tsx: the .js worker must be found and started directly.
  const dir = await tempDir(t);
  const sources = ['src/wire/errors.ts', 'src/workers/'];
  const files: string[] = [];
  for (const s of sources) {
    if (s.endsWith('/')) {
      const { readdir } = await import('node:fs/promises');
      for (const f of await readdir(join(ROOT, s))) if (f.endsWith('.ts')) files.push(join(s, f));
    } else files.push(s);
  }
  for (const file of files) {
    const out = ts.transpileModule(await readFile(join(ROOT, file), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
      fileName: file,
    });
    const dest = join(dir, file.replace(/\.ts$/, '.js'));
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(dest, out.outputText);
  }
  await writeFile(join(dir, 'package.json'), '{"type":"module"}');
  const script = join(dir, 'run.js');
  await writeFile(
    script,
    `import { WorkerPool, resolveWorkerScript } from './${relative(dir, join(dir, 'src/workers/index.js'))}';
     const found = resolveWorkerScript(new URL('./src/workers/pool.js', import.meta.url));
     const pool = new WorkerPool();
     const digest = await pool.sha256(Buffer.from('compiled'));
     const h = pool.hashSession();
     await h.update(Buffer.from('compi'));
     await h.update(Buffer.from('led'));
     console.log(found.typescript ? 'ts' : 'js', digest, await h.digest(), process.execArgv.length);
     await pool.close();`,
  );
  const run = await runNode([script]);
  assert.equal(run.code, 0, run.out);
  const d = sha(Buffer.from('compiled'));
  assert.equal(run.out.trim(), `js ${d} ${d} 0`);
});
