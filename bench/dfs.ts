// The dfs cluster benchmark: a real master and three keepers, each its own `dfs` process on loopback,
// driven through the SDK from this process. Big files put and got at replication 1 and 3, many small
// files, and metadata requests on the master, beside a baseline measured in the same run: the same
// bytes hashed once with SHA-256 and written to three plain files. Prints a table, then one JSON
// object as the last line of stdout.
//
//   npm run bench:dfs -- [--size 1GiB] [--small-files 1000] [--small-size 4KiB] [--concurrency 32]
//                        [--small-replication 3] [--inflight 64] [--meta-seconds 3] [--rounds N]
//                        [--big-rounds N] [--only big,small,meta] [--dir DIR] [--binary auto|dist|tsx]
//                        [--cpu-prof DIR] [--max-minutes 30] [--quick]

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { DfsClient } from '../src/index.js';
import { parseBytes, parseIntOption } from '../src/cli/command.js';
import { HOST, closedLoop, median, percentile, withTimeout, type RpcResult, runMain, UsageError } from './wire-common.js';

const MB = 1e6;
const MiB = 1024 ** 2;
/** Whether this file runs compiled (dist/bench/dfs.js) rather than through tsx. */
const COMPILED = import.meta.url.endsWith('.js');
/** The repository: this file is bench/dfs.ts, or dist/bench/dfs.js once compiled. */
const ROOT = fileURLToPath(new URL(COMPILED ? '../..' : '..', import.meta.url));
/** Reads of the source file, for the baseline and the uploads alike. */
const READ_BLOCK = MiB;
/** Small-file warm-up: rounds until the put rate climbs by less than this factor, and at most this many. */
const SMALL_WARMUP_GAIN = 1.1;
const SMALL_WARMUP_MAX_ROUNDS = 6;
/** The small-file warm-up rounds' rates (files/s), reported beside the measured ones: the cold start is a figure too. */
const smallWarmup: { put: number[]; get: number[] } = { put: [], get: [] };
/** Bytes of the warm-up transfers: enough for the JIT tiers, small beside a full run. */
const WARMUP_BYTES = 64 * MiB;
const KEEPERS = 3;

const TARGETS = {
  putRf3VsBaseline: 0.45,
  getRf3VsBaseline: 1.2,
  smallPutPerS: 2_000,
  smallGetPerS: 5_000,
  statPerS: 20_000,
};

type Family = 'big' | 'small' | 'meta';
const FAMILIES: readonly Family[] = ['big', 'small', 'meta'];

interface Config {
  size: number;
  smallFiles: number;
  smallSize: number;
  smallReplication: number;
  concurrency: number;
  inflight: number;
  metaSeconds: number;
  rounds: number;
  bigRounds: number;
  only: Set<Family>;
  dir: string;
  binary: 'auto' | 'dist' | 'tsx';
  cpuProf: string | null;
  maxMinutes: number;
  quick: boolean;
}

const USAGE = `usage: npm run bench:dfs -- [options]
  --size N               bytes of the big file (default 1GiB; suffixes KiB MiB GiB, powers of 1024)
  --small-files N        small files per round (default 1000)
  --small-size N         bytes per small file (default 4KiB)
  --small-replication N  replicas of each small file (default 3)
  --concurrency N        small-file puts or gets in flight (default 32)
  --inflight N           metadata requests in flight (default 64)
  --meta-seconds S       duration of each metadata run (default 3)
  --rounds N             measured rounds; medians are reported (default 3, and 1 for the big file)
  --big-rounds N         rounds of the big-file scenarios only (default 1, or --rounds if given)
  --only L               comma-separated subset of ${FAMILIES.join(',')} (default all)
  --dir DIR              where the cluster's data directories and the files go (default the OS temp dir)
  --binary auto|dist|tsx run dfs compiled (dist/) or from the sources through tsx; auto picks dist when
                         it is not older than the sources (default auto)
  --cpu-prof DIR         write CPU profiles of the master and of each keeper (main thread and workers)
                         into DIR/master, DIR/keeper1, ...; profile this process too with
                         node --cpu-prof --import tsx bench/dfs.ts
  --max-minutes M        give up, stop the cluster and fail after M minutes (default 30)
  --quick                64MiB, 200 small files, one round of everything: a smoke run`;

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      size: { type: 'string' },
      'small-files': { type: 'string' },
      'small-size': { type: 'string' },
      'small-replication': { type: 'string' },
      concurrency: { type: 'string' },
      inflight: { type: 'string' },
      'meta-seconds': { type: 'string' },
      rounds: { type: 'string' },
      'big-rounds': { type: 'string' },
      only: { type: 'string' },
      dir: { type: 'string' },
      binary: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'max-minutes': { type: 'string' },
      quick: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const int = (flag: string, min: number, max: number, fallback: number): number => {
    const v = values[flag as keyof typeof values];
    return typeof v === 'string' ? parseIntOption(v, `--${flag}`, min, max) : fallback;
  };
  const bytes = (flag: string, fallback: number): number => {
    const v = values[flag as keyof typeof values];
    if (typeof v !== 'string') return fallback;
    const n = parseBytes(v, `--${flag}`);
    if (n <= 0) throw new UsageError(`--${flag} ${v}: expected a positive size`);
    return n;
  };
  const only = new Set((values.only ?? FAMILIES.join(',')).split(',').map((s) => s.trim()) as Family[]);
  for (const f of only) if (!FAMILIES.includes(f)) throw new UsageError(`--only: unknown '${f}', expected some of ${FAMILIES.join(',')}`);
  const binary = values.binary ?? 'auto';
  if (binary !== 'auto' && binary !== 'dist' && binary !== 'tsx') throw new UsageError(`--binary ${binary}: expected auto, dist or tsx`);
  const metaSeconds = values['meta-seconds'] === undefined ? (quick ? 0.5 : 3) : Number(values['meta-seconds']);
  if (!(metaSeconds > 0 && metaSeconds <= 600)) throw new UsageError(`--meta-seconds ${values['meta-seconds']}: expected 0 < S <= 600`);
  const maxMinutes = values['max-minutes'] === undefined ? 30 : Number(values['max-minutes']);
  if (!(maxMinutes > 0)) throw new UsageError(`--max-minutes ${values['max-minutes']}: expected a positive number`);
  const rounds = int('rounds', 1, 100, quick ? 1 : 3);
  return {
    size: bytes('size', quick ? 64 * MiB : 1024 * MiB),
    smallFiles: int('small-files', 1, 1_000_000, quick ? 200 : 1000),
    smallSize: bytes('small-size', 4 * 1024),
    smallReplication: int('small-replication', 1, KEEPERS, 3),
    concurrency: int('concurrency', 1, 4096, 32),
    inflight: int('inflight', 1, 4096, 64),
    metaSeconds,
    rounds,
    bigRounds: int('big-rounds', 1, 100, values.rounds === undefined ? 1 : rounds),
    only,
    dir: resolve(values.dir ?? tmpdir()),
    binary,
    cpuProf: values['cpu-prof'] ? resolve(values['cpu-prof']) : null,
    maxMinutes,
    quick,
  };
}

// ---- The cluster: one `dfs` process per role ----

/**
 * Which dfs code runs: compiled, or the sources through tsx. The cluster and the SDK in this process
 * always run the same, so that a figure never mixes the two (tsx's output is slower in hot paths).
 */
interface Runner {
  label: string;
  /** Node options and script that start the `dfs` binary. */
  execArgv: string[];
  script: string;
  /** The SDK module this process imports. */
  sdk: string;
}

/** The compiled tree when every source file has a compiled file at least as new; else the sources through tsx. */
function resolveRunner(mode: Config['binary']): Runner {
  if (COMPILED) {
    if (mode === 'tsx') throw new UsageError('--binary tsx: this is the compiled benchmark; run bench/dfs.ts through tsx (npm run bench:dfs) instead');
    return {
      label: 'compiled',
      execArgv: [],
      script: fileURLToPath(new URL('../src/cli/main.js', import.meta.url)),
      sdk: new URL('../src/index.js', import.meta.url).href,
    };
  }
  const distMain = join(ROOT, 'dist/src/cli/main.js');
  const dist: Runner = { label: 'compiled, dist/', execArgv: [], script: distMain, sdk: pathToFileURL(join(ROOT, 'dist/src/index.js')).href };
  const tsx: Runner = {
    label: 'sources through tsx', execArgv: ['--import', 'tsx'], script: join(ROOT, 'src/cli/main.ts'), sdk: new URL('../src/index.js', import.meta.url).href,
  };
  if (mode === 'tsx') return tsx;
  if (mode === 'dist') {
    if (!existsSync(distMain)) throw new UsageError('--binary dist: dist/src/cli/main.js is missing; run npm run build');
    return dist;
  }
  const fresh = existsSync(distMain) && (readdirSync(join(ROOT, 'src'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .every((f) => {
      const compiled = join(ROOT, 'dist/src', f.replace(/\.ts$/, '.js'));
      return existsSync(compiled) && statSync(compiled).mtimeMs >= statSync(join(ROOT, 'src', f)).mtimeMs;
    });
  return fresh ? dist : { ...tsx, label: `${tsx.label}, as dist/ is missing or older than src/ (npm run build for compiled figures)` };
}

/**
 * Preloaded into every child: when this process goes away, even by SIGKILL, the IPC channel closes
 * and the child stops itself as Ctrl-C would, so no keeper outlives the benchmark.
 */
const EXIT_WITH_PARENT = `data:text/javascript,${encodeURIComponent(
  "if (process.channel) { process.channel.unref(); process.once('disconnect', () => { process.kill(process.pid, 'SIGTERM'); setTimeout(() => process.exit(1), 5000).unref(); }); }",
)}`;

interface Role {
  name: string;
  child: ChildProcess;
  address: string;
  /** The last lines the process logged, for error messages. */
  log: string[];
  /** Every line where the master declared a keeper dead: under heavy load, a sign the figures are disturbed. */
  deaths: string[];
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system, every thread) a process has used so far; null where /proc is missing. */
function processCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

class Cluster {
  private constructor(readonly master: Role, readonly keepers: Role[]) {}

  static async start(cfg: Config, runner: Runner, root: string, children: ChildProcess[]): Promise<Cluster> {
    const spawnRole = (name: string, args: string[], ready: RegExp): Promise<Role> => {
      // A directory per role: its worker threads write profiles of their own beside the main thread's.
      const prof = cfg.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(cfg.cpuProf, name)] : [];
      const child = spawn(process.execPath, [...runner.execArgv, '--import', EXIT_WITH_PARENT, ...prof, runner.script, ...args], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
      children.push(child);
      const log: string[] = [];
      const deaths: string[] = [];
      let partial = '';
      const onData = (d: Buffer): void => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop()!;
        log.push(...lines);
        deaths.push(...lines.filter((l) => / is dead: /.test(l)));
        if (log.length > 200) log.splice(0, log.length - 200);
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      return withTimeout(
        new Promise<Role>((resolve, reject) => {
          const check = (): void => {
            const m = log.map((l) => ready.exec(l)).find((x) => x !== null);
            if (m) {
              child.stderr!.off('data', check);
              resolve({ name, child, address: m[1]!, log, deaths });
            }
          };
          child.stderr!.on('data', check);
          child.once('exit', (code, signal) => reject(new Error(`dfs ${args[0]} (${name}) exited (code ${code}, signal ${signal}) before it was ready:\n${log.join('\n')}`)));
        }),
        30_000,
        `starting dfs ${args[0]} (${name})`,
      );
    };

    const master = await spawnRole('master', ['master', '--listen', `${HOST}:0`, '--data', join(root, 'master')], /master listening on (\S+),/);
    const keepers: Role[] = [];
    for (let i = 1; i <= KEEPERS; i++) {
      // Distinct zones, so replication 3 puts one replica on each keeper.
      keepers.push(await spawnRole(`keeper${i}`, [
        'keeper', '--master', master.address, '--listen', `${HOST}:0`, '--data', join(root, `keeper${i}`), '--zone', `zone${i}`,
      ], /keeper [0-9a-f]+ serving (\S+) from/));
    }
    return new Cluster(master, keepers);
  }

  get roles(): Role[] {
    return [this.master, ...this.keepers];
  }

  /** Waits until the master has heard from every keeper. */
  async ready(client: DfsClient): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const status = await client.status();
      if (status.keepers.filter((k) => k.alive).length >= KEEPERS) return;
      if (Date.now() > deadline) throw new Error(`only ${status.keepers.filter((k) => k.alive).length} of ${KEEPERS} keepers reported to the master within 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  cpu(): { master: number | null; keepers: number | null } {
    const ks = this.keepers.map((k) => processCpuSeconds(k.child.pid));
    return { master: processCpuSeconds(this.master.child.pid), keepers: ks.some((v) => v === null) ? null : ks.reduce((a, b) => a! + b!, 0) };
  }

  deaths(): string[] {
    return this.master.deaths;
  }

  /** Ctrl-C for every role (so CPU profiles get written), then SIGKILL for whatever is still up after 15 s. */
  async stop(): Promise<void> {
    await Promise.all(this.roles.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }));
  }
}

// ---- Measurement ----

interface Sample {
  /** MB/s for the big file and the baseline, files/s for small files, requests/s for metadata. */
  rate: number;
  seconds: number;
  /** Units moved: MB, files or requests; CPU time is divided by it. */
  units: number;
  p50Ms?: number;
  p99Ms?: number;
  /** CPU seconds spent during the run, by process. */
  cpu: { client: number; master: number | null; keepers: number | null };
  /** Seconds this process spent hashing a got file for the end-to-end check (inside `seconds`). */
  hashSeconds?: number;
}

type ScenarioKey =
  | 'baseline' | 'baseline_nosync' | 'put_rf1' | 'get_rf1' | 'put_rf3' | 'get_rf3'
  | 'small_put' | 'small_get' | 'meta_create' | 'meta_stat';

interface Run {
  seconds: number;
  units: number;
  latency?: RpcResult;
  hashSeconds?: number;
}

class Bench {
  readonly results = new Map<ScenarioKey, Sample[]>();

  constructor(readonly cluster: Cluster, private readonly died: Promise<never>) {}

  /** Runs one measurement under a deadline, with the CPU time of every process around it. */
  async measure(key: ScenarioKey | null, what: string, timeoutMs: number, run: () => Promise<Run>): Promise<Sample> {
    const clusterBefore = this.cluster.cpu();
    const clientBefore = process.cpuUsage();
    const r = await withTimeout(Promise.race([run(), this.died]), timeoutMs, what);
    const client = process.cpuUsage(clientBefore);
    const clusterAfter = this.cluster.cpu();
    const diff = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : b - a);
    const sample: Sample = {
      rate: r.units / r.seconds,
      seconds: r.seconds,
      units: r.units,
      cpu: {
        client: (client.user + client.system) / 1e6,
        master: diff(clusterBefore.master, clusterAfter.master),
        keepers: diff(clusterBefore.keepers, clusterAfter.keepers),
      },
      ...(r.latency ? { p50Ms: percentile(r.latency.latenciesUs, 50) / 1000, p99Ms: percentile(r.latency.latenciesUs, 99) / 1000 } : {}),
      ...(r.hashSeconds === undefined ? {} : { hashSeconds: r.hashSeconds }),
    };
    if (key !== null) {
      if (!this.results.has(key)) this.results.set(key, []);
      this.results.get(key)!.push(sample);
    }
    return sample;
  }
}

/** Fills `path` with `size` random bytes, fsynced so its write-back does not land inside a measurement; returns its SHA-256. */
async function generateSource(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const block = Buffer.allocUnsafe(4 * MiB);
  const fh = await open(path, 'w');
  try {
    for (let left = size; left > 0;) {
      const piece = block.subarray(0, Math.min(left, block.length));
      randomFillSync(piece);
      hash.update(piece);
      await fh.write(piece);
      left -= piece.length;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/**
 * The baseline: what this machine's disk and CPU do with the same bytes without dfs. Reads the source
 * as the uploads do, hashes it once and writes each block to three files. With `fsync`, each file is
 * fsynced at the end, as durable as dfs, whose keepers fsync every chunk before acknowledging it;
 * without, the copies may still sit in the page cache when the clock stops.
 */
async function baselineCopy(source: string, bytes: number, dir: string, expect: string | null, fsync: boolean): Promise<Run> {
  const paths = [0, 1, 2].map((i) => join(dir, `baseline-copy-${i}`));
  const t0 = performance.now();
  const hash = createHash('sha256');
  const files = await Promise.all(paths.map((p) => open(p, 'w')));
  try {
    for await (const buf of createReadStream(source, { highWaterMark: READ_BLOCK, end: bytes - 1 }) as AsyncIterable<Buffer>) {
      hash.update(buf);
      await Promise.all(files.map((f) => f.write(buf)));
    }
    if (fsync) await Promise.all(files.map((f) => f.sync()));
  } finally {
    await Promise.all(files.map((f) => f.close()));
  }
  const digest = hash.digest('hex');
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(paths.map((p) => rm(p, { force: true })));
  // Unsynced copies leave write-back behind; it must not run into the next measurement.
  if (!fsync) execFileSync('sync');
  if (expect !== null && digest !== expect) throw new Error(`baseline: the source hashes to ${digest}, generated as ${expect}`);
  return { seconds, units: bytes / MB };
}

async function putFile(client: DfsClient, path: string, source: string, bytes: number, replication: number): Promise<Run> {
  const t0 = performance.now();
  const result = await client.put(path, createReadStream(source, { highWaterMark: READ_BLOCK, end: bytes - 1 }), { replication });
  const seconds = (performance.now() - t0) / 1000;
  if (result.size !== bytes) throw new Error(`put ${path}: stored ${result.size} bytes, expected ${bytes}`);
  return { seconds, units: bytes / MB };
}

/** Reads the file back whole and checks its SHA-256 against the put's; the hashing is timed too, as any reader's work would be. */
async function getFile(client: DfsClient, path: string, bytes: number, expect: string | null): Promise<Run> {
  const t0 = performance.now();
  const hash = createHash('sha256');
  let hashMs = 0;
  let got = 0;
  for await (const buf of await client.get(path) as AsyncIterable<Buffer>) {
    const h0 = performance.now();
    hash.update(buf);
    hashMs += performance.now() - h0;
    got += buf.length;
  }
  const digest = hash.digest('hex');
  const seconds = (performance.now() - t0) / 1000;
  if (got !== bytes) throw new Error(`get ${path}: got ${got} bytes, expected ${bytes}`);
  if (expect !== null && digest !== expect) throw new Error(`get ${path}: SHA-256 ${digest} differs from the put's ${expect}`);
  return { seconds, units: bytes / MB, hashSeconds: hashMs / 1000 };
}

/** Runs `op(i)` for i in 0..count-1 with `inflight` outstanding, through the wire benchmark's closed loop. */
function closedLoopOver(count: number, inflight: number, seconds: number, op: (i: number) => Promise<void>): Promise<RpcResult> {
  let next = 0;
  return closedLoop({ inflight, count, seconds, body: Buffer.alloc(0) }, (done) => {
    op(next++).then(() => done(), (err: unknown) => done(err instanceof Error ? err : new Error(String(err))));
  });
}

async function readWhole(client: DfsClient, path: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of await client.get(path) as AsyncIterable<Buffer>) parts.push(b);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

// ---- Report ----

const fmt = (v: number | null | undefined, digits = 0): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function med(results: Map<ScenarioKey, Sample[]>, key: ScenarioKey, field: 'rate' | 'p50Ms' | 'p99Ms' | 'hashSeconds' | 'seconds' = 'rate'): number | null {
  const values = (results.get(key) ?? []).map((s) => s[field]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return values.length ? median(values) : null;
}

/** Median of the rounds' ratios: each round measures dfs and the baseline back to back, which cancels much of a neighbour's load. */
function pairedRatio(results: Map<ScenarioKey, Sample[]>, key: ScenarioKey, base: ScenarioKey): number | null {
  const a = results.get(key) ?? [];
  const b = results.get(base) ?? [];
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (b[i]!.rate > 0) ratios.push(a[i]!.rate / b[i]!.rate);
  return ratios.length ? median(ratios) : null;
}

interface Verdicts {
  put_rf3: boolean | null;
  get_rf3: boolean | null;
  small_put: boolean | null;
  small_get: boolean | null;
  meta_stat: boolean | null;
}

const atLeast = (v: number | null, min: number): boolean | null => (v === null ? null : v >= min);

/** Against the fsynced baseline, the one as durable as dfs. */
function verdicts(results: Map<ScenarioKey, Sample[]>): Verdicts {
  return {
    put_rf3: atLeast(pairedRatio(results, 'put_rf3', 'baseline'), TARGETS.putRf3VsBaseline),
    get_rf3: atLeast(pairedRatio(results, 'get_rf3', 'baseline'), TARGETS.getRf3VsBaseline),
    small_put: atLeast(med(results, 'small_put'), TARGETS.smallPutPerS),
    small_get: atLeast(med(results, 'small_get'), TARGETS.smallGetPerS),
    meta_stat: atLeast(med(results, 'meta_stat'), TARGETS.statPerS),
  };
}

/** The big-file targets against the baseline without fsync, for a reader who counts the page cache as the disk. */
function verdictsNoSync(results: Map<ScenarioKey, Sample[]>): Pick<Verdicts, 'put_rf3' | 'get_rf3'> {
  return {
    put_rf3: atLeast(pairedRatio(results, 'put_rf3', 'baseline_nosync'), TARGETS.putRf3VsBaseline),
    get_rf3: atLeast(pairedRatio(results, 'get_rf3', 'baseline_nosync'), TARGETS.getRf3VsBaseline),
  };
}

function report(bench: Bench, cfg: Config, runner: Runner, loadAtStart: number[]): void {
  const { results } = bench;
  const v = verdicts(results);
  const nosync = verdictsNoSync(results);
  const word = (b: boolean | null): string => (b === null ? 'n/a' : b ? 'met' : 'MISSED');
  const size = `${fmt(cfg.size / MiB)} MiB`;
  const small = `${fmt(cfg.smallFiles)} x ${fmt(cfg.smallSize / 1024, cfg.smallSize % 1024 ? 1 : 0)} KiB`;
  const rows: {
    key: ScenarioKey; label: string; unit: string; target: string; verdict: boolean | null; vsBaseline: boolean; nosync?: boolean | null;
  }[] = [
    { key: 'baseline', label: `baseline: SHA-256 + 3 file copies + fsync, ${size}`, unit: 'MB/s', target: '', verdict: null, vsBaseline: false },
    { key: 'baseline_nosync', label: `baseline without fsync (page cache), ${size}`, unit: 'MB/s', target: '', verdict: null, vsBaseline: false },
    { key: 'put_rf1', label: `put ${size}, replication 1`, unit: 'MB/s', target: '', verdict: null, vsBaseline: true },
    { key: 'get_rf1', label: `get ${size}, replication 1`, unit: 'MB/s', target: '', verdict: null, vsBaseline: true },
    { key: 'put_rf3', label: `put ${size}, replication 3`, unit: 'MB/s', target: `>= ${TARGETS.putRf3VsBaseline} x baseline`, verdict: v.put_rf3, vsBaseline: true, nosync: nosync.put_rf3 },
    { key: 'get_rf3', label: `get ${size}, replication 3`, unit: 'MB/s', target: `>= ${TARGETS.getRf3VsBaseline} x baseline`, verdict: v.get_rf3, vsBaseline: true, nosync: nosync.get_rf3 },
    { key: 'small_put', label: `put ${small}, rf ${cfg.smallReplication}, ${cfg.concurrency} in flight`, unit: 'files/s', target: `>= ${fmt(TARGETS.smallPutPerS)}/s`, verdict: v.small_put, vsBaseline: false },
    { key: 'small_get', label: `get ${small}, ${cfg.concurrency} in flight`, unit: 'files/s', target: `>= ${fmt(TARGETS.smallGetPerS)}/s`, verdict: v.small_get, vsBaseline: false },
    { key: 'meta_create', label: `creates (MKDIR), ${cfg.inflight} in flight`, unit: 'req/s', target: '', verdict: null, vsBaseline: false },
    { key: 'meta_stat', label: `stats (STAT of a file), ${cfg.inflight} in flight`, unit: 'req/s', target: `>= ${fmt(TARGETS.statPerS)}/s`, verdict: v.meta_stat, vsBaseline: false },
  ];
  const table: string[][] = [['scenario', 'median', 'unit', 'per round', 'p50 / p99 ms', 'x baseline', 'x no-fsync', 'target', 'result']];
  const cpuTable: string[][] = [['CPU during each run', 'per', 'client', 'master', 'keepers', 'cores busy']];
  for (const row of rows) {
    const samples = results.get(row.key);
    if (!samples?.length) continue;
    const p50 = med(results, row.key, 'p50Ms');
    const p99 = med(results, row.key, 'p99Ms');
    const ratio = row.vsBaseline ? pairedRatio(results, row.key, 'baseline') : null;
    const ratioNoSync = row.vsBaseline ? pairedRatio(results, row.key, 'baseline_nosync') : null;
    table.push([
      row.label,
      fmt(med(results, row.key)),
      row.unit,
      samples.map((s) => fmt(s.rate)).join(', '),
      p50 === null ? '' : `${fmt(p50, 1)} / ${fmt(p99, 1)}`,
      ratio === null ? '' : fmt(ratio, 2),
      ratioNoSync === null ? '' : fmt(ratioNoSync, 2),
      row.target,
      (row.target ? word(row.verdict) : '') + (row.nosync === undefined ? '' : ` (no-fsync: ${word(row.nosync)})`),
    ]);
    // Per 100 MB in ms for the big file; per file or request in µs for the rest.
    const big = row.unit === 'MB/s';
    const scale = big ? 100 * 1000 : 1e6;
    const perUnit = (get: (s: Sample) => number | null): string => {
      const values = samples.map((s) => { const c = get(s); return c === null ? null : (c / s.units) * scale; }).filter((x): x is number => x !== null);
      return values.length === samples.length ? fmt(median(values), big ? 0 : 1) : '-';
    };
    const busy = samples.map((s) => (s.cpu.master === null || s.cpu.keepers === null ? null : (s.cpu.client + s.cpu.master + s.cpu.keepers) / s.seconds));
    cpuTable.push([
      row.label,
      big ? 'ms / 100 MB' : row.unit === 'files/s' ? 'µs / file' : 'µs / request',
      perUnit((s) => s.cpu.client),
      perUnit((s) => s.cpu.master),
      perUnit((s) => s.cpu.keepers),
      busy.every((b) => b !== null) ? fmt(median(busy as number[]), 2) : '-',
    ]);
  }
  const print = (t: string[][], leftAligned: number[]): void => {
    const widths = t[0]!.map((_, i) => Math.max(...t.map((r) => r[i]!.length)));
    for (const [n, r] of t.entries()) {
      console.log(r.map((cell, i) => (leftAligned.includes(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd());
      if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
    }
  };
  const getHash = med(results, 'get_rf3', 'hashSeconds');
  const getSeconds = med(results, 'get_rf3', 'seconds');
  console.log('');
  console.log(`dfs cluster benchmark: loopback ${HOST}, node ${process.version}, ${cpus().length} cores, load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')} at start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at end`);
  console.log(`A master and ${KEEPERS} keepers, each a separate process, data under ${cfg.dir}; the SDK client runs in this process. dfs code: ${runner.label}.`);
  console.log(`Medians of ${cfg.bigRounds} round(s) for the ${size} file, ${cfg.rounds} for the rest; "x baseline" is the median of the rounds' ratios. MB = 1e6 bytes.`);
  console.log(`Targets are judged against the fsynced baseline, as durable as a dfs put; the verdict against the page-cache baseline is in parentheses.`);
  console.log(`Big file: read from a local file in ${READ_BLOCK / MiB} MiB blocks; put with the SDK's defaults (8 MiB chunks, 3 in flight), timed to COMMIT;`);
  console.log(`  get with 4 chunks read ahead, timed to the last byte, including this process's SHA-256 of the whole file (checked against the put's)` +
    (getHash !== null && getSeconds !== null ? `: ${fmt(getHash, 2)} s of ${fmt(getSeconds, 2)} s at replication 3.` : '.'));
  console.log(`Baseline: the same bytes read the same way, hashed once with SHA-256 and written to three files, each fsynced at the end;`);
  console.log(`  without fsync, the clock stops when the last write() returns (then the files are deleted and the system synced, untimed).`);
  console.log(`Small files: distinct random contents, after warm-up rounds of the same size until the put rate climbs less than 10% from one to the next (${smallWarmup.put.length} here, at most ${SMALL_WARMUP_MAX_ROUNDS}; their rates follow the tables); get reads each file whole and compares it with what was put.`);
  console.log(`Metadata: creates are MKDIR of distinct paths in one directory (each journaled and fsynced by the master before its reply);`);
  console.log(`  stats are STAT of 4 KiB files (one chunk, three replicas: the reply carries the chunk list). Each run lasts ${cfg.metaSeconds} s.`);
  console.log('');
  print(table, [0, 2, 7, 8]);
  console.log('');
  print(cpuTable, [0, 1]);
  if (smallWarmup.put.length > 0) {
    console.log('');
    console.log(`Small-file warm-up rounds, from a cold cluster (files/s): put ${smallWarmup.put.map((r) => fmt(r)).join(', ')}; get ${smallWarmup.get.map((r) => fmt(r)).join(', ')}`);
  }
  const deaths = bench.cluster.deaths();
  if (deaths.length > 0) {
    console.log('');
    console.log(`warning: the master declared keepers dead during the run (missed heartbeats; figures may be disturbed):`);
    for (const d of deaths) console.log(`  ${d}`);
  }
  console.log('');
}

function jsonLine(bench: Bench, cfg: Config): string {
  const { results } = bench;
  const m = (k: ScenarioKey, field: 'rate' | 'p50Ms' | 'p99Ms' = 'rate'): number | null => {
    const v = med(results, k, field);
    return v === null ? null : Math.round(v * 10) / 10;
  };
  const r = (k: ScenarioKey, base: ScenarioKey = 'baseline'): number | null => {
    const v = pairedRatio(results, k, base);
    return v === null ? null : Math.round(v * 1000) / 1000;
  };
  return JSON.stringify({
    put_rf1_mb_s: m('put_rf1'),
    put_rf3_mb_s: m('put_rf3'),
    get_rf3_mb_s: m('get_rf3'),
    small_put_per_s: m('small_put'),
    small_get_per_s: m('small_get'),
    meta_create_per_s: m('meta_create'),
    meta_stat_per_s: m('meta_stat'),
    baseline_mb_s: m('baseline'),
    get_rf1_mb_s: m('get_rf1'),
    baseline_nosync_mb_s: m('baseline_nosync'),
    put_rf3_vs_baseline: r('put_rf3'),
    get_rf3_vs_baseline: r('get_rf3'),
    put_rf3_vs_nosync: r('put_rf3', 'baseline_nosync'),
    get_rf3_vs_nosync: r('get_rf3', 'baseline_nosync'),
    small_warmup_put_per_s: smallWarmup.put.map((r) => Math.round(r)),
    small_warmup_get_per_s: smallWarmup.get.map((r) => Math.round(r)),
    small_put_p50_ms: m('small_put', 'p50Ms'),
    small_put_p99_ms: m('small_put', 'p99Ms'),
    small_get_p50_ms: m('small_get', 'p50Ms'),
    small_get_p99_ms: m('small_get', 'p99Ms'),
    meta_stat_p50_ms: m('meta_stat', 'p50Ms'),
    meta_stat_p99_ms: m('meta_stat', 'p99Ms'),
    targets_met: verdicts(results),
    targets_met_vs_nosync: verdictsNoSync(results),
    size_bytes: cfg.size,
    small_files: cfg.smallFiles,
    small_size_bytes: cfg.smallSize,
    small_replication: cfg.smallReplication,
    concurrency: cfg.concurrency,
    inflight: cfg.inflight,
    rounds: cfg.rounds,
    big_rounds: cfg.bigRounds,
    cores: cpus().length,
    load_average: Math.round(loadavg()[0]! * 100) / 100,
  });
}

// ---- Scenarios ----

/** Generous deadlines: anything slower than these is stuck, not slow. */
const bigTimeoutMs = (bytes: number): number => 120_000 + (bytes / (2 * MB)) * 1000;
const countTimeoutMs = (count: number): number => 120_000 + count * 20;

async function runBig(bench: Bench, client: DfsClient, cfg: Config, work: string): Promise<void> {
  const source = join(work, 'source');
  console.error(`big file: generating ${fmt(cfg.size / MiB)} MiB of random data`);
  const sha = await generateSource(source, cfg.size);
  const warm = Math.min(cfg.size, WARMUP_BYTES);
  console.error(`big file: warm-up with ${fmt(warm / MiB)} MiB (baseline, put and get at replication 3)`);
  await bench.measure(null, 'baseline warm-up', bigTimeoutMs(warm), () => baselineCopy(source, warm, work, null, true));
  await bench.measure(null, 'put warm-up', bigTimeoutMs(warm), () => putFile(client, '/warm/big', source, warm, 3));
  await bench.measure(null, 'get warm-up', bigTimeoutMs(warm), () => getFile(client, '/warm/big', warm, null));
  for (let round = 0; round < cfg.bigRounds; round++) {
    const tag = `round ${round + 1}/${cfg.bigRounds}`;
    const steps: [ScenarioKey, string, () => Promise<Run>][] = [
      ['baseline', 'baseline', () => baselineCopy(source, cfg.size, work, sha, true)],
      ['baseline_nosync', 'no-fsync', () => baselineCopy(source, cfg.size, work, sha, false)],
      ['put_rf1', 'put rf1', () => putFile(client, `/big/r${round}/rf1`, source, cfg.size, 1)],
      ['get_rf1', 'get rf1', () => getFile(client, `/big/r${round}/rf1`, cfg.size, sha)],
      ['put_rf3', 'put rf3', () => putFile(client, `/big/r${round}/rf3`, source, cfg.size, 3)],
      ['get_rf3', 'get rf3', () => getFile(client, `/big/r${round}/rf3`, cfg.size, sha)],
    ];
    for (const [key, label, run] of steps) {
      const s = await bench.measure(key, `${label} of ${fmt(cfg.size / MiB)} MiB`, bigTimeoutMs(cfg.size), run);
      console.error(`${tag} ${label.padEnd(11)} ${fmt(s.rate)} MB/s (${fmt(s.seconds, 2)} s)`);
    }
  }
  await rm(source, { force: true });
}

async function runSmall(bench: Bench, client: DfsClient, cfg: Config): Promise<void> {
  const n = cfg.smallFiles;
  // Distinct contents, made once: 4 MB for the default 1,000 files of 4 KiB.
  const pool = randomFillSync(Buffer.allocUnsafe(n * cfg.smallSize));
  const data = (i: number): Buffer => pool.subarray(i * cfg.smallSize, (i + 1) * cfg.smallSize);
  const options = { replication: cfg.smallReplication };
  const putAll = (dir: string, count: number) => async (): Promise<Run> => {
    const r = await closedLoopOver(count, cfg.concurrency, 3600, (i) => client.put(`${dir}/f${i}`, data(i), options).then(() => {}));
    return { seconds: r.seconds, units: r.completed, latency: r };
  };
  const getAll = (dir: string, count: number) => async (): Promise<Run> => {
    const r = await closedLoopOver(count, cfg.concurrency, 3600, async (i) => {
      const got = await readWhole(client, `${dir}/f${i}`);
      if (!got.equals(data(i))) throw new Error(`get ${dir}/f${i}: ${got.length} bytes that differ from the ${cfg.smallSize} put`);
    });
    return { seconds: r.seconds, units: r.completed, latency: r };
  };
  // Warm-up rounds until the put rate stops climbing: the master, the keepers and this client each
  // run the small-file path through several thousand requests before V8 has optimised all of it
  // (profiled: CPU per put falls about fivefold over the first 3,000-4,000 puts, on a quiet machine
  // too). A long-running cluster is warm, so the measured rounds start from there.
  let previous = 0;
  for (let w = 1; w <= SMALL_WARMUP_MAX_ROUNDS; w++) {
    const dir = `/warm/small${w}`;
    await client.mkdir(dir, { parents: true });
    const put = await bench.measure(null, 'small-file put warm-up', countTimeoutMs(n), putAll(dir, n));
    const get = await bench.measure(null, 'small-file get warm-up', countTimeoutMs(n), getAll(dir, n));
    console.error(`warm-up ${w} small put  ${fmt(put.rate)} files/s, get ${fmt(get.rate)} files/s`);
    smallWarmup.put.push(put.rate);
    smallWarmup.get.push(get.rate);
    if (w >= 2 && put.rate < previous * SMALL_WARMUP_GAIN) break;
    previous = put.rate;
  }
  for (let round = 0; round < cfg.rounds; round++) {
    const dir = `/small/r${round}`;
    await client.mkdir(dir, { parents: true });
    const put = await bench.measure('small_put', `${n} small puts`, countTimeoutMs(n), putAll(dir, n));
    console.error(`round ${round + 1}/${cfg.rounds} small put  ${fmt(put.rate)} files/s, p50 ${fmt(put.p50Ms, 1)} ms, p99 ${fmt(put.p99Ms, 1)} ms`);
    const get = await bench.measure('small_get', `${n} small gets`, countTimeoutMs(n), getAll(dir, n));
    console.error(`round ${round + 1}/${cfg.rounds} small get  ${fmt(get.rate)} files/s, p50 ${fmt(get.p50Ms, 1)} ms, p99 ${fmt(get.p99Ms, 1)} ms`);
  }
}

async function runMeta(bench: Bench, client: DfsClient, cfg: Config): Promise<void> {
  // The files STAT asks about: small files like the ones above, made here so --only meta works alone.
  const targets = 100;
  await client.mkdir('/meta/files', { parents: true });
  const content = randomFillSync(Buffer.allocUnsafe(4096));
  await closedLoopOver(targets, 16, 600, (i) => client.put(`/meta/files/f${i}`, content, { replication: 3 }).then(() => {}));
  const creates = (dir: string, seconds: number) => async (): Promise<Run> => {
    await client.mkdir(dir, { parents: true });
    const r = await closedLoopOver(Infinity, cfg.inflight, seconds, (i) => client.mkdir(`${dir}/d${i}`));
    return { seconds: r.seconds, units: r.completed, latency: r };
  };
  const stats = (seconds: number) => async (): Promise<Run> => {
    const r = await closedLoopOver(Infinity, cfg.inflight, seconds, async (i) => {
      const st = await client.stat(`/meta/files/f${i % targets}`);
      if (st.chunks.length !== 1) throw new Error(`stat /meta/files/f${i % targets}: ${st.chunks.length} chunks, expected 1`);
    });
    return { seconds: r.seconds, units: r.completed, latency: r };
  };
  const warm = Math.min(cfg.metaSeconds, 0.5);
  console.error(`metadata: warm-up with ${warm} s of creates and of stats`);
  const limit = (cfg.metaSeconds + 120) * 1000;
  await bench.measure(null, 'create warm-up', limit, creates('/meta/warm', warm));
  await bench.measure(null, 'stat warm-up', limit, stats(warm));
  for (let round = 0; round < cfg.rounds; round++) {
    const c = await bench.measure('meta_create', 'creates', limit, creates(`/meta/r${round}`, cfg.metaSeconds));
    console.error(`round ${round + 1}/${cfg.rounds} creates    ${fmt(c.rate)} req/s, p50 ${fmt(c.p50Ms, 1)} ms, p99 ${fmt(c.p99Ms, 1)} ms`);
    const s = await bench.measure('meta_stat', 'stats', limit, stats(cfg.metaSeconds));
    console.error(`round ${round + 1}/${cfg.rounds} stats      ${fmt(s.rate)} req/s, p50 ${fmt(s.p50Ms, 1)} ms, p99 ${fmt(s.p99Ms, 1)} ms`);
  }
}

// ---- Main ----

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  // Other work on a shared machine moves every figure; the ratios to the baseline, measured side by side, move less.
  const loadAtStart = loadavg();
  const runner = resolveRunner(cfg.binary);
  await mkdir(cfg.dir, { recursive: true });
  if (cfg.cpuProf) await mkdir(cfg.cpuProf, { recursive: true });
  const root = await mkdtemp(join(cfg.dir, 'dfs-bench-'));
  const children: ChildProcess[] = [];
  const cleanUp = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  };
  process.on('exit', cleanUp);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      console.error(`bench:dfs: ${signal}, stopping the cluster`);
      process.exit(130);
    });
  }
  const watchdog = setTimeout(() => {
    console.error(`bench:dfs: still running after ${cfg.maxMinutes} minutes (--max-minutes); giving up`);
    process.exit(1);
  }, cfg.maxMinutes * 60_000);
  watchdog.unref();

  let finished = false;
  let client: DfsClient | null = null;
  let cluster: Cluster | null = null;
  try {
    console.error(`starting a master and ${KEEPERS} keepers (${runner.label}) under ${relative(process.cwd(), root) || root}`);
    cluster = await Cluster.start(cfg, runner, root, children);
    // A role that dies mid-run fails the measurement at once instead of leaving it to the timeout.
    const died = new Promise<never>((_, reject) => {
      for (const role of cluster!.roles) {
        role.child.once('exit', (code, signal) => {
          if (!finished) reject(new Error(`${role.name} exited (code ${code}, signal ${signal}) during the run; its last lines:\n${role.log.slice(-20).join('\n')}`));
        });
      }
    });
    died.catch(() => {});
    const sdk = (await import(runner.sdk)) as typeof import('../src/index.js');
    client = await sdk.connect({ master: cluster.master.address });
    await cluster.ready(client);
    const bench = new Bench(cluster, died);
    const work = join(root, 'files');
    await mkdir(work);

    if (cfg.only.has('big')) await runBig(bench, client, cfg, work);
    if (cfg.only.has('small')) await runSmall(bench, client, cfg);
    if (cfg.only.has('meta')) await runMeta(bench, client, cfg);

    finished = true;
    report(bench, cfg, runner, loadAtStart);
    console.log(jsonLine(bench, cfg));
  } finally {
    finished = true;
    await client?.close().catch(() => {});
    await cluster?.stop();
    cleanUp();
  }
}

runMain('bench:dfs', main);
