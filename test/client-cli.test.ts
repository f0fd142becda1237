// The client's pure parts, without a cluster: how a source is cut into chunks (readers locate bytes
// as index × chunkSize, so one byte off corrupts every later offset), how the commands reject bad
// arguments before touching the network, and what people read: sizes, progress, listings, status.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, PassThrough } from 'node:stream';
import { mkdtemp, rm, writeFile, mkdir, readFile, readdir, readlink, realpath, symlink, lstat, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { connect } from '../src/client/client.js';
import { startFakeCluster, type FakeCluster } from './helpers/fake-cluster.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunkSource, checkChunkSize, MAX_CHUNK_SIZE } from '../src/client/chunker.js';
import { MAX_REPLICATION } from '../src/client/upload.js';
import { parseBytes } from '../src/cli/command.js';
import { replicaOrder, allReplicasFailed } from '../src/client/download.js';
import { backoffMs } from '../src/client/master-link.js';
import { clientCommands, formatListing, formatStat, formatStatus, localSource, localTarget, localWritePlan, masterAddress, remotePath, statusTotals } from '../src/cli/client-commands.js';
import { formatBytes, formatDuration, formatRate, formatTable } from '../src/cli/format.js';
import { formatProgress, ProgressBar } from '../src/cli/progress.js';
import type { CliIO } from '../src/cli/command.js';
import type { ClusterStatus, EntryInfo, StatInfo } from '../src/client/types.js';
import { createRng, fuzzSeed, formatSeed } from './helpers/fuzz.js';
import { DfsError } from '../src/wire/errors.js';

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of gen) out.push(Buffer.from(c));
  return out;
}

function assertChunking(chunks: Buffer[], input: Buffer, chunkSize: number): void {
  assert.equal(chunks.length, Math.ceil(input.length / chunkSize));
  chunks.forEach((c, i) => {
    if (i < chunks.length - 1) assert.equal(c.length, chunkSize, `chunk ${i} of ${chunks.length}`);
    else assert.ok(c.length > 0 && c.length <= chunkSize, `last chunk has ${c.length} bytes`);
  });
  assert.ok(Buffer.concat(chunks).equals(input));
}

function pieces(input: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  let i = 0;
  while (at < input.length) {
    const n = Math.max(1, sizes[i++ % sizes.length]!);
    out.push(input.subarray(at, at + n));
    at += n;
  }
  return out;
}

test('chunking at the edges: 0 bytes, chunk-1, chunk, chunk+1 and several chunks, from a Buffer and from a stream', async () => {
  const chunkSize = 1000;
  for (const size of [0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3 * chunkSize, 3 * chunkSize + 7]) {
    const input = Buffer.alloc(size);
    for (let i = 0; i < size; i++) input[i] = (i * 31 + 7) & 0xff;
    assertChunking(await collect(chunkSource(input, chunkSize)), input, chunkSize);
    assertChunking(await collect(chunkSource(Readable.from(pieces(input, [333])), chunkSize)), input, chunkSize);
    assertChunking(await collect(chunkSource(Readable.from(pieces(input, [chunkSize + 1])), chunkSize)), input, chunkSize);
    assertChunking(await collect(chunkSource((async function* () { yield* pieces(input, [1, 999, 1000, 2]); })(), chunkSize)), input, chunkSize);
  }
  assert.deepEqual(await collect(chunkSource(Readable.from([]), 10)), [], 'an empty stream yields no chunk at all');
});

test('chunking of random sources split at random offsets always yields exact chunk sizes', async () => {
  const seed = fuzzSeed();
  const rng = createRng(seed);
  for (let i = 0; i < 200; i++) {
    const chunkSize = rng.int(1, 64);
    const input = rng.bytes(rng.size(400));
    const sizes = Array.from({ length: 8 }, () => rng.int(0, 100));
    const chunks = await collect(chunkSource(Readable.from(pieces(input, sizes)), chunkSize));
    try {
      assertChunking(chunks, input, chunkSize);
    } catch (err) {
      assert.fail(`case ${i} failed; replay with DFS_FUZZ_SEED=${formatSeed(seed)}: ${(err as Error).message}`);
    }
  }
});

test('a chunk never aliases a buffer the source reuses', async () => {
  // Sources such as fs streams may hand out views of memory they later overwrite.
  const shared = Buffer.alloc(4);
  async function* reusing() {
    for (let i = 0; i < 3; i++) {
      shared.fill(i + 1);
      yield shared;
    }
  }
  const chunks: Buffer[] = [];
  for await (const c of chunkSource(reusing(), 6)) chunks.push(c);
  assert.deepEqual(chunks.map((c) => [...c]), [[1, 1, 1, 1, 2, 2], [2, 2, 3, 3, 3, 3]]);
});

test('strings in a source are taken as UTF-8 bytes', async () => {
  const chunks = await collect(chunkSource((async function* () { yield 'hé'; yield 'llo'; })(), 4));
  assert.equal(Buffer.concat(chunks).toString(), 'héllo');
  assert.deepEqual(chunks.map((c) => c.length), [4, 2]);
});

test('chunk sizes outside 1 byte..64 MiB are refused before anything is read', async () => {
  for (const bad of [0, -1, 1.5, MAX_CHUNK_SIZE + 1, Number.NaN]) {
    assert.throws(() => checkChunkSize(bad), (e: DfsError) => e.code === 'INVALID_ARGUMENT');
    await assert.rejects(collect(chunkSource(Buffer.alloc(1), bad)), (e: DfsError) => e.code === 'INVALID_ARGUMENT');
  }
  assert.equal(checkChunkSize(MAX_CHUNK_SIZE), MAX_CHUNK_SIZE);
});

test('a source that is neither bytes nor iterable is refused with INVALID_ARGUMENT', async () => {
  await assert.rejects(collect(chunkSource(42 as unknown as Buffer, 10)), (e: DfsError) => e.code === 'INVALID_ARGUMENT');
});

test('sizes print in binary units with one decimal below 100', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1024), '1.0 KiB');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(8 * 1024 ** 2), '8.0 MiB');
  assert.equal(formatBytes(512 * 1024 ** 2), '512 MiB');
  assert.equal(formatBytes(1024 ** 2 - 1), '1.0 MiB', '1023.99 KiB rounds up into the next unit');
  assert.equal(formatBytes(3 * 1024 ** 4), '3.0 TiB');
  assert.equal(formatBytes(-1), '?');
  assert.equal(formatRate(2 * 1024 ** 2), '2.0 MiB/s');
});

test('durations print as M:SS or H:MM:SS', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(5.4), '0:05');
  assert.equal(formatDuration(65), '1:05');
  assert.equal(formatDuration(3600 + 62), '1:01:02');
  assert.equal(formatDuration(Infinity), '--:--');
});

test('the progress line shows bytes, percentage, bar, rate and ETA', () => {
  const mib = 1024 ** 2;
  assert.equal(
    formatProgress({ bytes: 12 * mib, total: 40 * mib, elapsedMs: 2000, width: 100 }),
    '12.0 MiB / 40.0 MiB  30% [#########                     ]  6.0 MiB/s  ETA 0:05',
  );
  assert.equal(formatProgress({ bytes: 40 * mib, total: 40 * mib, elapsedMs: 4000, width: 100 }).endsWith('10.0 MiB/s  done'), true);
  assert.equal(formatProgress({ bytes: 0, total: 0, elapsedMs: 0, width: 100 }).includes('100%'), true, 'an empty file is complete at once');
  assert.equal(formatProgress({ bytes: 0, total: 10, elapsedMs: 0, width: 100 }).endsWith('-- B/s  ETA --:--'), true);
  assert.equal(formatProgress({ bytes: 3 * mib, elapsedMs: 1000 }), '3.0 MiB  3.0 MiB/s', 'without a total: bytes and rate');
  // A narrow terminal drops the bar rather than wrapping the line.
  const narrow = formatProgress({ bytes: mib, total: 2 * mib, elapsedMs: 1000, width: 40 });
  assert.equal(narrow.includes('['), false);
  assert.equal(narrow, '1.0 MiB / 2.0 MiB  50%  1.0 MiB/s  ETA 0:01');
  // Some pseudo-terminals report 0 columns: that means unknown, not no room.
  assert.ok(formatProgress({ bytes: mib, total: 2 * mib, elapsedMs: 1000, width: 0 }).includes('['));
});

test('the progress bar draws only on a terminal and never when quiet', () => {
  const written: string[] = [];
  const tty = { isTTY: true, columns: 100, write: (s: string) => written.push(s) };
  assert.equal(ProgressBar.wanted(tty, false), true);
  assert.equal(ProgressBar.wanted(tty, true), false);
  assert.equal(ProgressBar.wanted({ write: () => true }, false), false);
  const bar = new ProgressBar(tty, 100, true, 0);
  bar.update(50);
  bar.finish();
  assert.ok(written[0]!.startsWith('\r\x1b[2K50 B / 100 B  50%'));
  assert.equal(written.at(-1), '\n');
  const silent: string[] = [];
  const off = new ProgressBar({ isTTY: false, write: (s: string) => silent.push(s) }, 100, false);
  off.update(10);
  off.clear();
  off.finish();
  assert.deepEqual(silent, []);
});

test('tables pad columns and right-align numbers', () => {
  assert.equal(formatTable([['a', '1', 'x'], ['bbb', '22', 'y']], new Set([1])), 'a     1  x\nbbb  22  y');
  assert.equal(formatTable([]), '');
});

// ---- Commands: argument errors happen before any connection is attempted ----

function io(env: NodeJS.ProcessEnv = {}): CliIO & { out: () => string; err: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  const stdout = new PassThrough();
  stdout.on('data', (d: Buffer) => out.push(d.toString()));
  const stderr = new PassThrough() as PassThrough & { isTTY?: boolean };
  stderr.on('data', (d: Buffer) => err.push(d.toString()));
  return { stdout, stderr, env, signal: new AbortController().signal, out: () => out.join(''), err: () => err.join('') };
}

const NO_MASTER = { DFS_MASTER: '127.0.0.1:1' };

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DfsError, `expected a DfsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /^dfs /, 'the dispatcher adds the "dfs <cmd>:" prefix, not the command');
    return true;
  });
}

test('every client command prints its usage with --help and exits 0', async () => {
  for (const [name, command] of Object.entries(clientCommands)) {
    const cli = io();
    assert.equal(await command.run(['--help'], cli), 0, name);
    assert.match(cli.out(), new RegExp(`^dfs ${name}`), name);
    assert.match(cli.out(), /--master HOST:PORT/, `${name} documents --master`);
  }
});

test('wrong arguments are INVALID_ARGUMENT naming what was wrong', async () => {
  await rejectsWith(clientCommands.put!.run(['only-one'], io(NO_MASTER)), 'INVALID_ARGUMENT', /missing arguments; usage: dfs put LOCAL REMOTE/);
  await rejectsWith(clientCommands.put!.run(['a', 'b', 'c'], io(NO_MASTER)), 'INVALID_ARGUMENT', /too many arguments/);
  await rejectsWith(clientCommands.put!.run(['--replication', '/tmp/file', '/x'], io(NO_MASTER)), 'INVALID_ARGUMENT',
    /missing arguments \(--replication took "\/tmp\/file" as its value\)/);
  await rejectsWith(clientCommands.get!.run(['--master', '/docs/a'], io(NO_MASTER)), 'INVALID_ARGUMENT',
    /missing arguments \(--master took "\/docs\/a" as its value\)/);
  // A value that was meant as one is not blamed.
  await rejectsWith(clientCommands.put!.run(['--replication', '2', 'local'], io(NO_MASTER)), 'INVALID_ARGUMENT', /^missing arguments; usage/);
  // Node turns invalid UTF-8 in an argument into U+FFFD: two different names would become one.
  await rejectsWith(clientCommands.cat!.run(['/a\uFFFD'], io(NO_MASTER)), 'INVALID_ARGUMENT', /not valid UTF-8/);
  await rejectsWith(clientCommands.put!.run(['a', '/dir\uFFFD/'], io(NO_MASTER)), 'INVALID_ARGUMENT', /not valid UTF-8/);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--bogus'], io(NO_MASTER)), 'INVALID_ARGUMENT', /bogus/);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--replication', '0'], io(NO_MASTER)), 'INVALID_ARGUMENT', /--replication 0 is outside 1\.\.16/);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--replication', 'three'], io(NO_MASTER)), 'INVALID_ARGUMENT', /not a whole number/);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--chunk-size', '65MiB'], io(NO_MASTER)), 'INVALID_ARGUMENT', /--chunk-size 65MiB is outside/);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--chunk-size', 'lots'], io(NO_MASTER)), 'INVALID_ARGUMENT', /not a byte count/);
  await rejectsWith(clientCommands.get!.run([], io(NO_MASTER)), 'INVALID_ARGUMENT', /missing arguments/);
  await rejectsWith(clientCommands.get!.run(['/a', 'b', 'c'], io(NO_MASTER)), 'INVALID_ARGUMENT', /too many arguments/);
  await rejectsWith(clientCommands.mv!.run(['/a'], io(NO_MASTER)), 'INVALID_ARGUMENT', /usage: dfs mv SRC DST/);
  await rejectsWith(clientCommands.status!.run(['extra'], io(NO_MASTER)), 'INVALID_ARGUMENT', /too many arguments/);
  await rejectsWith(clientCommands.ls!.run(['-x'], io(NO_MASTER)), 'INVALID_ARGUMENT', /-x/);
});

test('--replication is 1..16, the master\'s own limit, and put --help says so', async () => {
  assert.equal(MAX_REPLICATION, 16);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--replication', '17'], io(NO_MASTER)), 'INVALID_ARGUMENT', /--replication 17 is outside 1\.\.16/);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--replication', '255'], io(NO_MASTER)), 'INVALID_ARGUMENT', /outside 1\.\.16/);
  const cli = io();
  await clientCommands.put!.run(['--help'], cli);
  assert.match(cli.out(), /replicas per chunk, 1\.\.16 /);
  assert.doesNotMatch(cli.out(), /255/);
});

test('--chunk-size is a whole number of bytes from 4 KiB to 64 MiB', async () => {
  for (const bad of ['1', '4095', '1.5', '0.5KiB', '65MiB']) {
    await rejectsWith(clientCommands.put!.run(['a', '/b', '--chunk-size', bad], io(NO_MASTER)), 'INVALID_ARGUMENT', /--chunk-size/);
  }
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--chunk-size', '1.5'], io(NO_MASTER)), 'INVALID_ARGUMENT', /not a whole number of bytes/);
  await rejectsWith(clientCommands.put!.run(['a', '/b', '--chunk-size', '4095'], io(NO_MASTER)), 'INVALID_ARGUMENT', /outside 4KiB\.\.64MiB/);
  assert.equal(parseBytes('4KiB', 'x'), 4096);
  assert.equal(parseBytes('1.5KiB', 'x'), 1536);
  assert.equal(parseBytes('64MiB', 'x'), 64 << 20);
  // Within the limits, the next failure is the missing local file: the size was accepted.
  for (const good of ['4096', '4KiB', '1.5MiB', '64MiB']) {
    await rejectsWith(clientCommands.put!.run(['/nonexistent/a', '/b', '--chunk-size', good], io(NO_MASTER)), 'NOT_FOUND', /does not exist/);
  }
  assert.throws(() => checkChunkSize(1.5), (e: DfsError) => e.code === 'INVALID_ARGUMENT' && /whole number/.test(e.message));
});

test('option errors are one line: a negative value, a missing value, an unknown option, a value for a flag', async () => {
  const oneLine = async (argv: string[], pattern: RegExp) => {
    await rejectsWith(clientCommands.put!.run(argv, io(NO_MASTER)), 'INVALID_ARGUMENT', pattern);
    await clientCommands.put!.run(argv, io(NO_MASTER)).catch((e: Error) => assert.doesNotMatch(e.message, /\n/, e.message));
  };
  await oneLine(['a', '/b', '--chunk-size', '-1'], /^option --chunk-size needs a value; '-1' starts with '-' and is not taken as one: write --chunk-size=-1 to pass it; see dfs put --help$/);
  await oneLine(['a', '/b', '--chunk-size'], /^option --chunk-size needs a value; see dfs put --help$/);
  await oneLine(['a', '/b', '--bogus'], /^unknown option --bogus; see dfs put --help$/);
  await oneLine(['a', '/b', '-x'], /^unknown option -x; see dfs put --help$/);
  await oneLine(['a', '/b', '--quiet=yes'], /^option --quiet takes no value; see dfs put --help$/);
  await oneLine(['a', '/b', '-q=1'], /.+/);
  await oneLine(['a', '/b', '--chunk-size=-1'], /--chunk-size '-1' is not a byte count/);
});

test('without --master or DFS_MASTER the commands say how to name the master', async () => {
  await rejectsWith(clientCommands.ls!.run([], io({})), 'INVALID_ARGUMENT', /pass --master HOST:PORT or set DFS_MASTER/);
  assert.equal(masterAddress({ master: 'm:1' }, { DFS_MASTER: 'e:2' }), 'm:1', '--master wins over the environment');
  assert.equal(masterAddress({}, { DFS_MASTER: ' e:2 ' }), 'e:2');
  assert.throws(() => masterAddress({}, { DFS_MASTER: '' }), (e: DfsError) => e.code === 'INVALID_ARGUMENT');
  await rejectsWith(clientCommands.stat!.run(['/x', '--master', 'nonsense'], io({})), 'INVALID_ARGUMENT', /master address 'nonsense' is not HOST:PORT/);
});

test('an unreachable master is UNAVAILABLE naming its address', async () => {
  await rejectsWith(clientCommands.ls!.run(['/'], io({ DFS_MASTER: '127.0.0.1:1' })), 'UNAVAILABLE', /127\.0\.0\.1:1/);
});

test('put of a missing or unreadable local file names the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const missing = join(dir, 'nope.bin');
  await rejectsWith(clientCommands.put!.run([missing, '/x'], io(NO_MASTER)), 'NOT_FOUND', new RegExp(`local file '${missing}' does not exist`));
  await rejectsWith(localSource(join(dir, 'nope', 'deeper')), 'NOT_FOUND', /does not exist/);
  await rejectsWith(clientCommands.put!.run([dir, '/x'], io(NO_MASTER)), 'IS_A_DIRECTORY', /is a directory/);
  await writeFile(join(dir, 'f'), 'abc');
  assert.deepEqual(await localSource(join(dir, 'f')), { size: 3 });
});

test('get picks its local target like cp: a name, a directory, or the remote name here', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'sub'));
  assert.equal(await localTarget('/a/b.txt', join(dir, 'sub')), join(dir, 'sub', 'b.txt'));
  assert.equal(await localTarget('/a/b.txt', join(dir, 'c.txt')), join(dir, 'c.txt'));
  assert.equal(await localTarget('/a/b.txt', undefined), join(process.cwd(), 'b.txt'));
});

// ---- get against a stand-in cluster: what LOCAL is decides how it is written ----

async function clusterWithFile(t: { after(fn: () => Promise<void>): void }, path: string, data: Buffer): Promise<FakeCluster> {
  const cluster = await startFakeCluster();
  t.after(() => cluster.stop());
  const client = await connect({ master: cluster.master });
  try {
    await client.put(path, data, { chunkSize: 4096 });
  } finally {
    await client.close();
  }
  return cluster;
}

const payload = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7 + 3) & 0xff));

test('get to an existing file replaces it atomically, leaving no temporary file', async (t) => {
  const cluster = await clusterWithFile(t, '/f.bin', payload);
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const local = join(dir, 'out.bin');
  await writeFile(local, 'old contents, longer than nothing at all');
  assert.equal(await clientCommands.get!.run(['/f.bin', local, '-q'], io({ DFS_MASTER: cluster.master })), 0);
  assert.ok((await readFile(local)).equals(payload));
  assert.deepEqual(await readdir(dir), ['out.bin']);
  assert.deepEqual(await localWritePlan(local), { mode: 'replace', path: local });
  const cli = io();
  await clientCommands.get!.run(['--help'], cli);
  assert.match(cli.out(), /renamed over it: LOCAL is replaced\s+atomically/);
  assert.match(cli.out(), /a directory\s+the file goes inside it/);
});

test('get to a symlink keeps the link and replaces its target; a dangling link gets its target created', async (t) => {
  const cluster = await clusterWithFile(t, '/f.bin', payload);
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'dfs-cli-')));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'real'));
  const target = join(dir, 'real', 'target.bin');
  await writeFile(target, 'old');
  const link = join(dir, 'link.bin');
  await symlink(join('real', 'target.bin'), link);
  assert.equal(await clientCommands.get!.run(['/f.bin', link, '-q'], io({ DFS_MASTER: cluster.master })), 0);
  assert.ok((await lstat(link)).isSymbolicLink(), 'the link is still a link');
  assert.equal(await readlink(link), join('real', 'target.bin'));
  assert.ok((await readFile(target)).equals(payload));
  assert.deepEqual(await readdir(join(dir, 'real')), ['target.bin'], 'the temporary file was beside the target');

  const dangling = join(dir, 'dangling');
  await symlink(join(dir, 'real', 'new.bin'), dangling);
  assert.equal(await clientCommands.get!.run(['/f.bin', dangling, '-q'], io({ DFS_MASTER: cluster.master })), 0);
  assert.ok((await lstat(dangling)).isSymbolicLink());
  assert.ok((await readFile(join(dir, 'real', 'new.bin'))).equals(payload));
});

test('get to a FIFO streams into it: a reader gets the bytes and the FIFO stays a FIFO', { timeout: 20_000 }, async (t) => {
  const cluster = await clusterWithFile(t, '/f.bin', payload);
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'pipe');
  execFileSync('mkfifo', [fifo]);
  assert.deepEqual(await localWritePlan(fifo), { mode: 'stream', path: fifo });
  const reading = (async () => {
    const parts: Buffer[] = [];
    for await (const p of createReadStream(fifo)) parts.push(p as Buffer);
    return Buffer.concat(parts);
  })();
  assert.equal(await clientCommands.get!.run(['/f.bin', fifo, '-q'], io({ DFS_MASTER: cluster.master })), 0);
  assert.ok((await reading).equals(payload));
  assert.ok((await lstat(fifo)).isFIFO(), 'the FIFO is still a FIFO');
  assert.deepEqual(await readdir(dir), ['pipe']);
});

test('get to /dev/null works and /dev/null stays a character device', async (t) => {
  const cluster = await clusterWithFile(t, '/f.bin', payload);
  assert.ok((await stat('/dev/null')).isCharacterDevice());
  assert.deepEqual(await localWritePlan('/dev/null'), { mode: 'stream', path: '/dev/null' });
  assert.equal(await clientCommands.get!.run(['/f.bin', '/dev/null', '-q'], io({ DFS_MASTER: cluster.master })), 0);
  assert.ok((await stat('/dev/null')).isCharacterDevice(), '/dev/null is still a character device');
  assert.ok((await lstat('/dev/null')).isCharacterDevice());
});

test('get into a directory puts the file inside under the remote name; a directory at that name is IS_A_DIRECTORY', async (t) => {
  const cluster = await clusterWithFile(t, '/f.bin', payload);
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  assert.equal(await clientCommands.get!.run(['/f.bin', dir, '-q'], io({ DFS_MASTER: cluster.master })), 0);
  assert.ok((await readFile(join(dir, 'f.bin'))).equals(payload));
  await rm(join(dir, 'f.bin'));
  await mkdir(join(dir, 'f.bin'));
  await rejectsWith(clientCommands.get!.run(['/f.bin', dir, '-q'], io({ DFS_MASTER: cluster.master })), 'IS_A_DIRECTORY', /is a directory/);
  await rejectsWith(localWritePlan(join(dir, 'f.bin')), 'IS_A_DIRECTORY', /is a directory/);
  await writeFile(join(dir, 'plain'), 'x');
  await rejectsWith(clientCommands.get!.run(['/f.bin', join(dir, 'plain', 'sub'), '-q'], io({ DFS_MASTER: cluster.master })),
    'NOT_A_DIRECTORY', /plain' is not a directory/);
  await rejectsWith(clientCommands.get!.run(['/f.bin', join(dir, 'absent', 'sub'), '-q'], io({ DFS_MASTER: cluster.master })),
    'NOT_FOUND', /local directory '.*absent' does not exist/);
});

test('mv into a directory keeps the name: DST ending in / or an existing directory; otherwise a plain rename', async (t) => {
  const cluster = await clusterWithFile(t, '/a.txt', payload);
  const env = { DFS_MASTER: cluster.master };
  cluster.dirs.add('/docs');
  assert.equal(await clientCommands.mv!.run(['/a.txt', '/docs/'], io(env)), 0);
  assert.deepEqual([...cluster.files.keys()], ['/docs/a.txt']);
  cluster.dirs.add('/old');
  assert.equal(await clientCommands.mv!.run(['/docs/a.txt', '/old'], io(env)), 0);
  assert.deepEqual([...cluster.files.keys()], ['/old/a.txt']);
  assert.equal(await clientCommands.mv!.run(['/old/a.txt', '/b.txt'], io(env)), 0);
  assert.deepEqual([...cluster.files.keys()], ['/b.txt']);
  assert.equal(await clientCommands.mv!.run(['b.txt', '/'], io(env)), 0);
  assert.deepEqual([...cluster.files.keys()], ['/b.txt']);
  const cli = io();
  await clientCommands.mv!.run(['--help'], cli);
  assert.match(cli.out(), /DST ending in '\/' or naming an existing directory/);
});

test('a remote path the master would refuse is INVALID_ARGUMENT naming the problem, before any connection', async () => {
  const longName = `/${'n'.repeat(256)}`;
  const longPath = '/a'.repeat(2100);
  const cases: [string[], RegExp][] = [
    [['stat', longName], /256 bytes long, more than the limit of 255/],
    [['ls', longPath], /4200 bytes long, more than the limit of 4096/],
    [['mkdir', '/a/../b'], /'\.\.'/],
    [['rm', '/a/./b'], /'\.'/],
    [['cat', '/a\nb'], /control character U\+000A/],
    [['get', '/a\x7fb'], /control character U\+007F: "\/a\\u007fb"$/],
    [['mv', '/a', longName], /more than the limit of 255/],
  ];
  for (const [[cmd, ...args], pattern] of cases) {
    // NO_MASTER points at a closed port: reaching it would be UNAVAILABLE, not INVALID_ARGUMENT.
    await rejectsWith(clientCommands[cmd]!.run(args, io(NO_MASTER)), 'INVALID_ARGUMENT', pattern);
  }
  await rejectsWith(clientCommands.put!.run(['/nonexistent/local', longName], io(NO_MASTER)), 'INVALID_ARGUMENT', /limit of 255/);
  assert.equal(remotePath('a//b/'), '/a/b');
});

test('remote paths without a leading slash are taken from the root', () => {
  assert.equal(remotePath('docs/a'), '/docs/a');
  assert.equal(remotePath('/docs/a'), '/docs/a');
});

// ---- What people read ----

const entries: EntryInfo[] = [
  { name: 'docs', type: 'directory', size: 0, replication: 0, mtime: Date.UTC(2024, 4, 1, 13, 45), chunkSize: 0, count: 1 },
  { name: 'big.bin', type: 'file', size: 20_000_000, replication: 3, mtime: Date.UTC(2024, 4, 2, 9, 5), chunkSize: 8 << 20, count: 3 },
];

test('ls shows names, directories with a slash; -l adds type, replication, size and time', () => {
  assert.equal(formatListing(entries, false), 'docs/\nbig.bin');
  assert.equal(formatListing(entries, true), [
    'd  -   1 entry  2024-05-01 13:45  docs/',
    '-  3  19.1 MiB  2024-05-02 09:05  big.bin',
  ].join('\n'));
  assert.equal(formatListing([], true), '');
});

test('stat shows each chunk and where its replicas live, dead ones marked', () => {
  const info: StatInfo = {
    ...entries[1]!, path: '/docs/big.bin',
    chunks: [{
      id: 'c0', size: 8 << 20, sha256: 'ab'.repeat(32),
      replicas: [{ id: 'k1aaaaaaaa', address: '10.0.0.1:7001', alive: true }, { id: 'k2bbbbbbbb', address: '10.0.0.2:7001', alive: false }],
    }],
  };
  const text = formatStat(info);
  assert.match(text, /size: +19\.1 MiB \(20000000 bytes\)/);
  assert.match(text, /10\.0\.0\.1:7001 \(k1aaaaaa\), 10\.0\.0\.2:7001 \(k2bbbbbb, dead\)/);
  assert.match(formatStat({ ...entries[0]!, path: '/docs', chunks: [] }), /type: +directory\nentries: +1/);
});

test('status lists keepers with their state and space, then totals over the live ones', () => {
  const health = { underReplicated: 2, missing: 1, repairsInFlight: 1, repaired: 7, repairBytesPerS: 1024 ** 2, garbage: 3 };
  const normal = { mode: 'normal', modeUntil: 0, acceptingWrites: true, diskError: '', drained: false } as const;
  const st: ClusterStatus = {
    files: 2, chunks: 5, ...health,
    keepers: [
      { id: 'k2', address: '10.0.0.2:7001', zone: 'b', alive: false, capacity: 100 * 1024 ** 3, used: 1024 ** 3, chunks: 2, load: 0, lastSeenMs: 12_000, ...normal },
      { id: 'k1', address: '10.0.0.1:7001', zone: 'a', alive: true, capacity: 100 * 1024 ** 3, used: 25 * 1024 ** 3, chunks: 3, load: 1, lastSeenMs: 100, ...normal },
      { id: 'k3', address: '10.0.0.3:7001', zone: 'c', alive: true, capacity: 10, used: 0, chunks: 0, load: 0, lastSeenMs: 100, ...normal, mode: 'draining', drained: true },
    ],
  };
  assert.deepEqual(statusTotals(st), { keepers: 3, alive: 2, dead: 1, capacity: 100 * 1024 ** 3 + 10, used: 25 * 1024 ** 3 });
  const text = formatStatus(st);
  const lines = text.split('\n');
  assert.match(lines[1]!, /^k1 +10\.0\.0\.1:7001 +a +alive +100 GiB +25\.0 GiB +25% +3$/);
  assert.match(lines[2]!, /^k2 +10\.0\.0\.2:7001 +b +dead \(12s\)/);
  assert.match(lines[3]!, /^k3 +10\.0\.0\.3:7001 +c +alive, drained: safe to remove/);
  assert.match(text, /keepers: 2 alive, 1 dead/);
  assert.match(text, /files: 2, chunks: 5/);
  assert.match(text, /replication: 2 chunk\(s\) under-replicated, 1 missing; copies in flight 1, 7 repaired, 1\.0 MiB\/s; garbage 3/);
  assert.equal(formatStatus({ files: 0, chunks: 0, ...health, keepers: [] }).startsWith('keepers: 0 alive'), true);
});

// ---- Replica choice and failure reporting ----

test('reads spread over replicas: least busy first, rotating per chunk among equals, live ones before dead ones', () => {
  const r = (id: string, alive = true) => ({ id, address: `${id}:1`, alive });
  const replicas = [r('a'), r('b', false), r('c'), r('d')];
  assert.deepEqual(replicaOrder(replicas, 0).map((x) => x.id), ['a', 'c', 'd', 'b']);
  assert.deepEqual(replicaOrder(replicas, 1).map((x) => x.id), ['c', 'd', 'a', 'b']);
  assert.deepEqual(replicaOrder(replicas, 2).map((x) => x.id), ['d', 'a', 'c', 'b']);
  assert.deepEqual(replicaOrder([], 5), []);
  // Busy keepers go last among the live ones, whatever the rotation says.
  const load = (address: string) => (address === 'a:1' ? 2 : address === 'c:1' ? 1 : 0);
  assert.deepEqual(replicaOrder(replicas, 0, load).map((x) => x.id), ['d', 'c', 'a', 'b']);
});

test('a chunk whose every replica is damaged is CHECKSUM_MISMATCH; any outage among them makes it UNAVAILABLE', () => {
  const chunk = { id: 'c', size: 1, sha256: '00', replicas: [] };
  const bad = (address: string) => ({ address, code: 'CHECKSUM_MISMATCH' as const, message: 'bad bytes' });
  const down = (address: string) => ({ address, code: 'UNAVAILABLE' as const, message: 'ECONNREFUSED' });
  const all = allReplicasFailed('/f', 2, chunk, [bad('a:1'), bad('b:1')]);
  assert.equal(all.code, 'CHECKSUM_MISMATCH');
  assert.match(all.message, /\/f: chunk 2 \(c\): all 2 replicas failed: a:1: CHECKSUM_MISMATCH: bad bytes; b:1/);
  assert.equal(allReplicasFailed('/f', 0, chunk, [bad('a:1'), down('b:1')]).code, 'UNAVAILABLE');
  assert.match(allReplicasFailed('/f', 0, chunk, []).message, /has no replicas/);
});

test('retry delays grow, stay randomised, and are capped', () => {
  for (let attempt = 1; attempt <= 10; attempt++) {
    const ceiling = Math.min(2000, 50 * 2 ** (attempt - 1));
    for (let i = 0; i < 20; i++) {
      const d = backoffMs(attempt);
      assert.ok(d >= ceiling / 2 - 1 && d <= ceiling, `attempt ${attempt}: ${d} ms`);
    }
  }
});
