// The master's durability benchmark, on real `dfs` processes on loopback:
//   restart   a master started on a checkpoint of 100k and of 1M files (one chunk each, replication
//             3, built here with the state machine's own code): time from spawn to listening, and
//             its resident memory against an empty master's, per chunk;
//   creates   MKDIR requests against a master that fsyncs its journal before each reply, many in
//             flight, beside a baseline measured in the same run: one write + fdatasync at a time;
//   failure   a keeper holding 1 GiB killed with SIGKILL in a cluster of four (replication 3): time
//             until the master reports it dead, and until STATUS says nothing is under-replicated.
// Prints a table, then one JSON object as the last line of stdout.
//
//   npm run bench:durability -- [--files 100000,1000000] [--size 1GiB] [--inflight 128] [--seconds 5]
//                               [--only restart,creates,failure] [--dir DIR] [--binary auto|dist|tsx]

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect, type DfsClient } from '../src/index.js';
import { parseBytes, parseIntOption } from '../src/cli/command.js';
import { callForBuffer, connect as connectWire, parseAddress } from '../src/transport/index.js';
import { STATUS, STATUS_BODY } from '../src/protocol/ops.js';
import { decodeRecord } from '../src/wire/index.js';
import { MetadataState } from '../src/master/namespace.js';
import { writeCheckpoint, segmentName } from '../src/master/metadata-store.js';
import { UsageError, median, runMain, withTimeout } from './wire-common.js';

const COMPILED = import.meta.url.endsWith('.js');
const ROOT = fileURLToPath(new URL(COMPILED ? '../..' : '..', import.meta.url));
const MiB = 1024 ** 2;

const TARGETS = { detectDeadS: 3, restoreRfS: 15, restart1mS: 5, bytesPerChunk: 200, createsPerS: 10_000 };

type Family = 'restart' | 'creates' | 'failure';
const FAMILIES: readonly Family[] = ['restart', 'creates', 'failure'];

const USAGE = `usage: npm run bench:durability -- [options]
  --files L        comma-separated file counts for the restart runs (default 100000,1000000)
  --size N         bytes held by the keeper that is killed, about (default 1GiB)
  --inflight N     creates in flight (default 128, the stream limit of one connection)
  --seconds S      duration of a create run (default 5)
  --rounds N       create runs and restarts per size; medians are reported (default 3)
  --only L         comma-separated subset of ${FAMILIES.join(',')} (default all)
  --dir DIR        where data directories go (default the OS temp dir)
  --binary M       auto|dist|tsx: run dfs compiled or through tsx (auto: dist when not older than src)
  --timeout S      give up waiting for repair after S seconds (default 120)`;

interface Config {
  files: number[];
  size: number;
  inflight: number;
  seconds: number;
  rounds: number;
  only: Set<Family>;
  dir: string;
  binary: 'auto' | 'dist' | 'tsx';
  timeoutS: number;
}

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      files: { type: 'string' }, size: { type: 'string' }, inflight: { type: 'string' }, seconds: { type: 'string' },
      rounds: { type: 'string' }, only: { type: 'string' }, dir: { type: 'string' }, binary: { type: 'string' },
      timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const only = new Set((values.only ?? FAMILIES.join(',')).split(',') as Family[]);
  for (const f of only) if (!FAMILIES.includes(f)) throw new UsageError(`--only ${f}: expected some of ${FAMILIES.join(',')}`);
  const binary = (values.binary ?? 'auto') as Config['binary'];
  if (!['auto', 'dist', 'tsx'].includes(binary)) throw new UsageError(`--binary ${binary}: expected auto, dist or tsx`);
  return {
    files: (values.files ?? '100000,1000000').split(',').map((v) => parseIntOption(v, '--files', 1, 10_000_000)),
    size: values.size ? parseBytes(values.size, '--size') : 1024 * MiB,
    inflight: values.inflight ? parseIntOption(values.inflight, '--inflight', 1, 128) : 128,
    seconds: values.seconds ? parseIntOption(values.seconds, '--seconds', 1, 600) : 5,
    rounds: values.rounds ? parseIntOption(values.rounds, '--rounds', 1, 20) : 3,
    only,
    dir: values.dir ?? tmpdir(),
    binary,
    timeoutS: values.timeout ? parseIntOption(values.timeout, '--timeout', 1, 3600) : 120,
  };
}

// ---- processes -------------------------------------------------------------------------------

interface Runner { execArgv: string[]; script: string; label: string }

function resolveRunner(mode: Config['binary']): Runner {
  const dist = { execArgv: [], script: join(ROOT, 'dist/src/cli/main.js'), label: 'compiled (dist/)' };
  const tsx = { execArgv: ['--import', 'tsx'], script: join(ROOT, 'src/cli/main.ts'), label: 'from the sources through tsx' };
  if (mode === 'dist' || (mode === 'auto' && COMPILED)) return dist;
  if (mode === 'tsx') return tsx;
  const stale = (dir: string): boolean => readdirSync(join(ROOT, 'src', dir), { withFileTypes: true }).some((e) => {
    const rel = join(dir, e.name);
    if (e.isDirectory()) return stale(rel);
    if (!e.name.endsWith('.ts')) return false;
    const out = join(ROOT, 'dist/src', rel.replace(/\.ts$/, '.js'));
    return !existsSync(out) || statSync(out).mtimeMs < statSync(join(ROOT, 'src', rel)).mtimeMs;
  });
  return stale('.') ? { ...tsx, label: `${tsx.label} (dist/ is missing or older than src/)` } : dist;
}

interface Proc { child: ChildProcess; address: string; log: string[] }

const children = new Set<ChildProcess>();
process.once('exit', () => { for (const c of children) c.kill('SIGKILL'); });

function start(runner: Runner, args: string[], ready: RegExp, timeoutMs = 120_000): Promise<Proc> {
  const child = spawn(process.execPath, [...runner.execArgv, runner.script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`dfs ${args[0]} did not start in ${timeoutMs} ms:\n${log.join('')}`)); }, timeoutMs);
    const onData = (d: Buffer) => {
      log.push(d.toString());
      if (log.length > 400) log.splice(0, log.length - 400);
      const m = ready.exec(log.join(''));
      if (m) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve({ child, address: m[1], log });
      }
    };
    const onExit = (code: number | null) => { clearTimeout(timer); reject(new Error(`dfs ${args[0]} exited with ${code}:\n${log.join('')}`)); };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
  });
}

async function stop(p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill(signal);
  await exited;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const masterArgs = (dir: string, extra: string[] = []) => ['master', '--listen', '127.0.0.1:0', '--data', dir, ...extra];
const LISTENING = /listening on (\S+?),/;

// ---- restart and memory ----------------------------------------------------------------------

/** Writes checkpoint 1 of `files` one-chunk files at replication 3 (1,000 per directory) into `dir`. */
async function buildCheckpoint(dir: string, files: number): Promise<number> {
  const s = new MetadataState();
  const keepers = ['keeper-1', 'keeper-2', 'keeper-3'];
  keepers.forEach((id, i) => s.apply({ type: 'register-keeper', id, address: `127.0.0.1:${7071 + i}`, zone: `zone${i + 1}`, capacity: 2 ** 40 }));
  const mtime = Date.now();
  const hex = (b: Buffer) => b.toString('hex');
  const pool = randomBytes(1 << 20);
  for (let i = 0; i < files; i++) {
    const dirPath = `/data/d${String(Math.floor(i / 1000)).padStart(5, '0')}`;
    if (i % 1000 === 0) s.apply({ type: 'mkdir', path: dirPath, parents: true, mtime });
    const at = (i * 97) % (pool.length - 96);
    const uploadId = hex(randomBytes(16));
    const id = hex(randomBytes(16));
    const path = `${dirPath}/part-${String(i).padStart(8, '0')}.bin`;
    s.apply({ type: 'begin-upload', uploadId, path, replication: 3, chunkSize: 8 * MiB, mtime });
    s.apply({ type: 'allocate-chunks', uploadId, chunks: [{ id, replicas: keepers }], mtime });
    s.apply({ type: 'commit-file', uploadId, path, size: 65536, mtime, chunks: [{ id, size: 65536, sha256: hex(pool.subarray(at, at + 32)), replicas: keepers }] });
  }
  await mkdir(dir, { recursive: true });
  const bytes = await writeCheckpoint(dir, 1, s);
  await (await open(join(dir, segmentName(1)), 'w')).close();
  return bytes;
}

interface Start { seconds: number; rss: number; loadMs: number }

/** Starts a master on `dir`, times spawn to listening, and reads its RSS once it has settled. */
async function timedStart(runner: Runner, dir: string): Promise<Start> {
  const t0 = performance.now();
  const p = await start(runner, masterArgs(dir), LISTENING);
  const seconds = (performance.now() - t0) / 1000;
  // Let the checkpoint buffer and the start-up garbage go: RSS of the master at rest.
  let rss = rssOf(p.child.pid!);
  for (let i = 0; i < 6; i++) {
    await sleep(500);
    rss = Math.min(rss, rssOf(p.child.pid!));
  }
  const loadMs = Number(/loaded in (\d+) ms/.exec(p.log.join(''))?.[1] ?? NaN);
  await stop(p, 'SIGKILL'); // no shutdown checkpoint: the next round starts on the same files
  return { seconds, rss, loadMs };
}

// ---- creates ---------------------------------------------------------------------------------

async function createsRun(client: DfsClient, dir: string, inflight: number, seconds: number): Promise<{ rate: number; p99Ms: number }> {
  await client.mkdir(dir, { parents: true });
  const end = performance.now() + seconds * 1000;
  const lat: number[] = [];
  let next = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await client.mkdir(`${dir}/d${next++}`);
      lat.push(performance.now() - t);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { rate: lat.length / elapsed, p99Ms: lat[Math.floor(lat.length * 0.99)] ?? 0 };
}

/** The baseline: how many write + fdatasync pairs the disk does one after the other. */
async function fsyncRate(dir: string, seconds: number): Promise<number> {
  const fh = await open(join(dir, 'fsync-baseline'), 'w');
  const line = Buffer.alloc(200, 0x61);
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() < end) {
    await fh.write(line);
    await fh.datasync();
    n++;
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await fh.close();
  return rate;
}

// ---- keeper failure --------------------------------------------------------------------------

interface StatusNow { aliveIds: Set<string>; underReplicated: number | undefined }

async function statusNow(master: string): Promise<StatusNow> {
  const conn = await connectWire(parseAddress(master));
  try {
    const { response, body } = await callForBuffer(conn, STATUS, {});
    const keepers = decodeRecord(STATUS_BODY, body).keepers;
    return {
      aliveIds: new Set(keepers.filter((k) => k.alive).map((k) => k.id)),
      underReplicated: (response as { underReplicated?: number }).underReplicated,
    };
  } finally {
    conn.destroy();
  }
}

async function failureRun(runner: Runner, work: string, size: number, timeoutS: number) {
  const master = await start(runner, masterArgs(join(work, 'master')), LISTENING);
  const keepers: Proc[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      keepers.push(await start(runner, ['keeper', '--master', master.address, '--listen', '127.0.0.1:0', '--data', join(work, `keeper${i}`), '--zone', `z${i}`], /serving (\S+) from/));
    }
    const client = await connect({ master: master.address });
    for (let i = 0; ; i++) {
      if ((await client.status()).keepers.filter((k) => k.alive).length === 4) break;
      if (i > 200) throw new Error('four keepers did not report');
      await sleep(100);
    }
    // The killed keeper holds about 3/4 of the chunks: write 4/3 of `size`.
    const total = Math.ceil((size * 4) / 3 / (8 * MiB)) * 8 * MiB;
    const piece = randomBytes(MiB);
    async function* source() { for (let sent = 0; sent < total; sent += MiB) yield piece.subarray(0, Math.min(MiB, total - sent)); }
    const t0 = performance.now();
    await client.put('/bench/big', source(), { replication: 3 });
    const putS = (performance.now() - t0) / 1000;
    const status = await client.status();
    const victim = status.keepers.reduce((a, b) => (b.used > a.used ? b : a));
    const held = victim.used;
    const victimProc = keepers.find((k) => k.address === victim.address)!;
    await client.close();
    const killed = performance.now();
    await stop(victimProc, 'SIGKILL');
    let detectS: number | null = null;
    let restoreS: number | null = null;
    let repairReported = false;
    const deadline = killed + timeoutS * 1000;
    while (performance.now() < deadline) {
      const now = await statusNow(master.address);
      if (detectS === null && !now.aliveIds.has(victim.id)) detectS = (performance.now() - killed) / 1000;
      if (now.underReplicated !== undefined) repairReported = true;
      if (detectS !== null && now.underReplicated === 0) {
        restoreS = (performance.now() - killed) / 1000;
        break;
      }
      // Without the field a few seconds after detection, this master does no repair.
      if (detectS !== null && !repairReported && performance.now() - killed > detectS * 1000 + 5000) break;
      await sleep(50);
    }
    return { detectS, restoreS, repairReported, held, putS };
  } finally {
    for (const k of keepers) await stop(k, 'SIGKILL');
    await stop(master, 'SIGKILL');
  }
}

// ---- main ------------------------------------------------------------------------------------

const fmt = (v: number | null | undefined, digits = 0) =>
  v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  const runner = resolveRunner(cfg.binary);
  await mkdir(cfg.dir, { recursive: true });
  const root = await mkdtemp(join(cfg.dir, 'dfs-durability-'));
  const result: Record<string, number | null> = {};
  const rows: string[][] = [];
  const row = (what: string, value: string, target: string) => rows.push([what, value, target]);
  const verdict = (ok: boolean | null) => (ok === null ? 'n/a' : ok ? 'met' : 'missed');
  console.error(`dfs durability benchmark: node ${process.version}, ${cpus().length} cores, load average ${loadavg()[0].toFixed(2)}, dfs ${runner.label}, data in ${relative(process.cwd(), root) || root}`);
  try {
    if (cfg.only.has('restart')) {
      const empty = join(root, 'empty');
      await mkdir(empty);
      const baseRss = median(await seq(cfg.rounds, async () => (await timedStart(runner, empty)).rss));
      result.master_empty_rss_mib = round(baseRss / MiB, 1);
      row('empty master RSS (MiB)', fmt(baseRss / MiB, 1), 'baseline');
      for (const files of cfg.files) {
        const dir = join(root, `files-${files}`);
        const t0 = performance.now();
        const bytes = await buildCheckpoint(dir, files);
        console.error(`restart: checkpoint of ${fmt(files)} files built in ${fmt((performance.now() - t0) / 1000, 1)} s, ${fmt(bytes / MiB, 1)} MiB`);
        const starts = await seq(cfg.rounds, () => timedStart(runner, dir));
        const seconds = median(starts.map((s) => s.seconds));
        const rss = median(starts.map((s) => s.rss));
        const perChunk = (rss - baseRss) / files;
        const label = files >= 1e6 && files % 1e6 === 0 ? `${files / 1e6}m` : files % 1000 === 0 ? `${files / 1000}k` : String(files);
        result[`restart_${label}_files_s`] = round(seconds, 2);
        result[`checkpoint_${label}_files_mib`] = round(bytes / MiB, 1);
        result[`master_bytes_per_chunk_${label}`] = Math.round(perChunk);
        row(`restart, ${fmt(files)} files (s, spawn to listening)`, fmt(seconds, 2), files === 1e6 ? `<= ${TARGETS.restart1mS} s: ${verdict(seconds <= TARGETS.restart1mS)}` : '');
        row(`  of which loading the metadata (ms)`, fmt(median(starts.map((s) => s.loadMs))), '');
        row(`master RSS, ${fmt(files)} files (MiB)`, fmt(rss / MiB, 1), '');
        row(`  bytes per chunk above an empty master`, fmt(perChunk), files === 1e6 ? `<= ${TARGETS.bytesPerChunk}: ${verdict(perChunk <= TARGETS.bytesPerChunk)}` : '');
        if (files === 1e6) result.master_bytes_per_chunk = Math.round(perChunk);
      }
      // The pause a live master's event loop sees while a checkpoint of the largest size is made.
      const largest = Math.max(...cfg.files);
      const dir = join(root, `files-${largest}`);
      const p = await start(runner, masterArgs(dir, ['--checkpoint-entries', '1']), LISTENING);
      const client = await connect({ master: p.address });
      await client.mkdir('/trigger');
      const m = await withTimeout((async () => {
        for (;;) {
          const hit = /checkpoint (\d+): (\d+) files, (\d+) bytes in (\d+) ms; longest event-loop pause meanwhile ([\d.]+) ms/.exec(p.log.join(''));
          if (hit) return hit;
          await sleep(100);
        }
      })(), 300_000, 'a checkpoint');
      await client.close();
      await stop(p, 'SIGKILL');
      result.checkpoint_s = round(Number(m[4]) / 1000, 2);
      result.checkpoint_pause_ms = Number(m[5]);
      row(`checkpoint of ${fmt(largest)} files in a worker (s)`, fmt(Number(m[4]) / 1000, 2), '');
      row(`  longest event-loop pause of the master meanwhile (ms)`, m[5], '');
    }
    if (cfg.only.has('creates')) {
      const fsyncs = await fsyncRate(root, Math.min(cfg.seconds, 3));
      result.fsync_per_s = Math.round(fsyncs);
      const p = await start(runner, masterArgs(join(root, 'creates')), LISTENING);
      const client = await connect({ master: p.address });
      await createsRun(client, '/warm', cfg.inflight, 1);
      const runs = await seq(cfg.rounds, async (i) => createsRun(client, `/r${i}`, cfg.inflight, cfg.seconds));
      await client.close();
      await stop(p);
      const rate = median(runs.map((r) => r.rate));
      result.durable_create_per_s = Math.round(rate);
      result.durable_create_p99_ms = round(median(runs.map((r) => r.p99Ms)), 1);
      row('baseline: write + fdatasync one at a time (/s)', fmt(fsyncs), 'baseline');
      row(`durable creates (MKDIR), ${cfg.inflight} in flight (/s)`, fmt(rate), `>= ${fmt(TARGETS.createsPerS)}: ${verdict(rate >= TARGETS.createsPerS)}`);
      row('  p99 latency (ms)', fmt(result.durable_create_p99_ms, 1), '');
      row('  creates per fsync of the baseline', fmt(rate / fsyncs, 1), '');
    }
    if (cfg.only.has('failure')) {
      const f = await failureRun(runner, join(root, 'failure'), cfg.size, cfg.timeoutS);
      result.detect_dead_s = f.detectS === null ? null : round(f.detectS, 2);
      result.restore_rf_s = f.restoreS === null ? null : round(f.restoreS, 2);
      result.killed_keeper_gib = round(f.held / 1024 ** 3, 2);
      row(`keeper killed holding (GiB); put took ${fmt(f.putS, 1)} s`, fmt(f.held / 1024 ** 3, 2), '');
      row('time until dfs status shows it dead (s)', fmt(f.detectS, 2), `<= ${TARGETS.detectDeadS} s: ${verdict(f.detectS === null ? false : f.detectS <= TARGETS.detectDeadS)}`);
      row('time until nothing is under-replicated (s)', f.repairReported ? fmt(f.restoreS, 2) : 'n/a (no repair)',
        f.repairReported ? `<= ${TARGETS.restoreRfS} s: ${verdict(f.restoreS !== null && f.restoreS <= TARGETS.restoreRfS)}` : 'n/a');
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  const width = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length), 6));
  console.log(`${'scenario'.padEnd(width[0])}  ${'value'.padStart(width[1])}  target`);
  console.log(`${'-'.repeat(width[0])}  ${'-'.repeat(width[1])}  ${'-'.repeat(width[2])}`);
  for (const r of rows) console.log(`${r[0].padEnd(width[0])}  ${r[1].padStart(width[1])}  ${r[2]}`);
  console.log(JSON.stringify(result));
}

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

async function seq<T>(n: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await fn(i));
  return out;
}

runMain('bench:durability', main);
