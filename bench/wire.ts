// The wire benchmark: dfs's transport against raw node:net (the ceiling) and node:http2, on loopback,
// every figure measured in the same run as its baselines. Servers run in forked child processes; this
// process is the client. Prints a table, then one JSON object as the last line of stdout.
//
//   npm run bench:wire -- [--bulk-bytes 1GiB] [--streams 16] [--rpc-seconds 3 | --rpc-count N]
//                         [--inflight 64] [--rounds 5] [--only bulk|rpc] [--contenders dfs,net,http2]
//                         [--chunk 256KiB] [--preroll 256MiB] [--quick]
//
// `npm run bench:wire` runs the TypeScript through tsx; `node dist/bench/wire.js` after `npm run build`
// measures the compiled output instead.

import { fork, type ChildProcess } from 'node:child_process';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpus, loadavg } from 'node:os';
import { CONTENDER_KEYS, loadContender, type ContenderKey } from './wire-contenders.js';
import { median, percentile, withTimeout, type Contender, type Ports, runMain, UsageError } from './wire-common.js';
import type { ServerMessage } from './wire-server.js';

const MB = 1e6;
const RPC_BODY_BYTES = 64;

interface Config {
  bulkBytes: number;
  streams: number;
  rpcSeconds: number;
  rpcCount: number;
  inflight: number;
  rounds: number;
  chunk: number;
  only: 'bulk' | 'rpc' | null;
  contenders: ContenderKey[];
  warmupBulkBytes: number;
  /** Unmeasured bytes sent just before each measured bulk transfer, by the same contender. */
  prerollBytes: number;
  warmupRpcSeconds: number;
  quick: boolean;
}

const USAGE = `usage: npm run bench:wire -- [options]
  --bulk-bytes N    bytes per bulk transfer (default 1GiB; suffixes KiB MiB GiB KB MB GB)
  --streams N       concurrent streams in the multi-stream bulk scenario (default 16)
  --rpc-seconds S   duration of each small-request run (default 3)
  --rpc-count N     stop each small-request run after N requests (no time limit unless --rpc-seconds)
  --inflight N      small requests in flight on the one connection (default 64)
  --rounds N        measured rounds; the median is reported (default 5)
  --chunk N         write() size for bulk uploads (default 256KiB)
  --preroll N       unmeasured bytes each contender sends just before each measured bulk run
                    (default a quarter of --bulk-bytes; 0 for none)
  --only bulk|rpc   run one family of scenarios
  --contenders L    comma-separated subset of ${CONTENDER_KEYS.join(',')} (default all)
  --quick           small sizes and one round, for a smoke run`;

function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?$/i.exec(text.trim());
  const unit: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
  const value = m ? Math.round(Number(m[1]) * unit[(m[2] ?? 'b').toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(value) || value <= 0) throw new UsageError(`${flag} ${text}: expected a positive size such as 1073741824 or 64MiB`);
  return value;
}

function parsePositive(text: string, flag: string, integer = true): number {
  const value = Number(text);
  if (!(value > 0) || (integer && !Number.isSafeInteger(value))) throw new UsageError(`${flag} ${text}: expected a positive ${integer ? 'integer' : 'number'}`);
  return value;
}

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      'bulk-bytes': { type: 'string' },
      streams: { type: 'string' },
      'rpc-seconds': { type: 'string' },
      'rpc-count': { type: 'string' },
      inflight: { type: 'string' },
      rounds: { type: 'string' },
      chunk: { type: 'string' },
      preroll: { type: 'string' },
      only: { type: 'string' },
      contenders: { type: 'string' },
      quick: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const rpcCount = values['rpc-count'] ? parsePositive(values['rpc-count'], '--rpc-count') : Infinity;
  const rpcSeconds = values['rpc-seconds']
    ? parsePositive(values['rpc-seconds'], '--rpc-seconds', false)
    : rpcCount < Infinity ? 600 : quick ? 0.5 : 3;
  if (values.only && values.only !== 'bulk' && values.only !== 'rpc') throw new UsageError(`--only ${values.only}: expected bulk or rpc`);
  const contenders = (values.contenders ?? CONTENDER_KEYS.join(',')).split(',').map((s) => s.trim()) as ContenderKey[];
  for (const c of contenders) {
    if (!CONTENDER_KEYS.includes(c)) throw new UsageError(`--contenders: unknown '${c}', expected some of ${CONTENDER_KEYS.join(',')}`);
  }
  const bulkBytes = values['bulk-bytes'] ? parseSize(values['bulk-bytes'], '--bulk-bytes') : quick ? 32 * 1024 ** 2 : 1024 ** 3;
  return {
    bulkBytes,
    streams: values.streams ? parsePositive(values.streams, '--streams') : 16,
    rpcSeconds,
    rpcCount,
    inflight: values.inflight ? parsePositive(values.inflight, '--inflight') : 64,
    rounds: values.rounds ? parsePositive(values.rounds, '--rounds') : quick ? 1 : 5,
    chunk: values.chunk ? parseSize(values.chunk, '--chunk') : 256 * 1024,
    only: (values.only as Config['only']) ?? null,
    contenders,
    // A warm-up run is a full transfer; warmUp() repeats it until the rate settles.
    warmupBulkBytes: quick ? Math.min(bulkBytes, 8 * 1024 ** 2) : bulkBytes,
    prerollBytes: values.preroll === '0' ? 0 : values.preroll ? parseSize(values.preroll, '--preroll') : quick ? 0 : Math.ceil(bulkBytes / 4),
    warmupRpcSeconds: quick ? 0.2 : 1,
    quick,
  };
}

// ---- Server children ----

class ServerChild {
  private cpuWaiters: ((us: number) => void)[] = [];
  private constructor(readonly child: ChildProcess, readonly ports: Ports) {
    child.on('message', (m: ServerMessage) => {
      if ('cpuUs' in m) this.cpuWaiters.shift()?.(m.cpuUs);
    });
  }

  static async start(key: ContenderKey, children: ChildProcess[]): Promise<ServerChild> {
    // The same file type as this one: wire-server.ts under tsx, or wire-server.js from a tsc build.
    const self = fileURLToPath(import.meta.url);
    const ext = extname(self);
    const child = fork(join(dirname(self), `wire-server${ext}`), [key], {
      execArgv: ext === '.ts' ? ['--import', 'tsx'] : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    const ports = await withTimeout(
      new Promise<Ports>((resolve, reject) => {
        child.once('message', (m: ServerMessage) => {
          if ('ports' in m) resolve(m.ports);
          else reject(new Error(`${key} server failed to start: ${'error' in m ? m.error : JSON.stringify(m)}`));
        });
        child.once('exit', (code) => reject(new Error(`${key} server exited with code ${code} before listening`)));
      }),
      30_000,
      `starting the ${key} server`,
    );
    return new ServerChild(child, ports);
  }

  /** The child's CPU time (user + system) so far, in microseconds. */
  cpuUs(): Promise<number> {
    return withTimeout(
      new Promise<number>((resolve) => {
        this.cpuWaiters.push(resolve);
        this.child.send('cpu');
      }),
      10_000,
      'reading the server CPU time',
    );
  }
}

// ---- Scenarios ----

type ScenarioKey = 'bulk' | 'bulk16' | 'rpc';

interface Sample {
  /** MB/s for bulk, requests/s for rpc. */
  rate: number;
  p50Us?: number;
  p99Us?: number;
  /** CPU time both processes spent, per MB (bulk) or per request (rpc), in microseconds. */
  clientCpuUs: number;
  serverCpuUs: number;
}

interface Entrant {
  key: ContenderKey;
  contender: Contender;
  server: ServerChild;
}

async function measure(e: Entrant, scenario: ScenarioKey, cfg: Config, warm: boolean, died: Promise<never>): Promise<Sample> {
  const bytes = warm ? cfg.warmupBulkBytes : cfg.bulkBytes;
  const seconds = warm ? cfg.warmupRpcSeconds : cfg.rpcSeconds;
  if (!warm && scenario !== 'rpc' && cfg.prerollBytes > 0) {
    // Unmeasured: a process that sat idle while the others ran pays again to take memory back (its
    // page faults and system time per GiB rise); the measured transfer starts from a busy process.
    const streams = scenario === 'bulk' ? 1 : cfg.streams;
    const chunk = Buffer.alloc(Math.min(cfg.chunk, cfg.prerollBytes), 0xa5);
    await withTimeout(Promise.race([e.contender.bulk(e.server.ports, { totalBytes: cfg.prerollBytes, streams, chunk }), died]), 120_000, `${e.key} pre-roll`);
  }
  const serverBefore = await e.server.cpuUs();
  const clientBefore = process.cpuUsage();
  let rate: number;
  /** Requests or MB moved, the unit CPU time is divided by. */
  let units: number;
  let latency: Pick<Sample, 'p50Us' | 'p99Us'> = {};
  if (scenario === 'rpc') {
    const run = e.contender.rpc(e.server.ports, {
      inflight: cfg.inflight,
      count: warm ? Infinity : cfg.rpcCount,
      seconds,
      body: Buffer.alloc(RPC_BODY_BYTES, 0x5a),
    });
    const r = await withTimeout(Promise.race([run, died]), (seconds + 60) * 1000, `${e.key} small requests`);
    if (r.completed === 0) throw new Error(`${e.key} small requests completed nothing`);
    rate = r.completed / r.seconds;
    units = r.completed;
    latency = { p50Us: percentile(r.latenciesUs, 50), p99Us: percentile(r.latenciesUs, 99) };
  } else {
    const streams = scenario === 'bulk' ? 1 : cfg.streams;
    const chunk = Buffer.alloc(Math.min(cfg.chunk, bytes), 0xa5);
    const run = e.contender.bulk(e.server.ports, { totalBytes: bytes, streams, chunk });
    // Generous: a transfer slower than 10 MB/s means something is stuck, not slow.
    const r = await withTimeout(Promise.race([run, died]), 60_000 + (bytes / (10 * MB)) * 1000, `${e.key} bulk x${streams}`);
    rate = bytes / MB / r.seconds;
    units = bytes / MB;
  }
  const client = process.cpuUsage(clientBefore);
  const serverAfter = await e.server.cpuUs();
  return { rate, ...latency, clientCpuUs: (client.user + client.system) / units, serverCpuUs: (serverAfter - serverBefore) / units };
}

/**
 * Throughput keeps climbing for the first GiBs of a new process: JIT tiers, and the receiver's
 * memory settling (its page faults per GiB fall several-fold). Warm-up repeats a scenario until the
 * rate climbs less than WARMUP_SETTLED from one run to the next, so the rounds compare steady states.
 */
const WARMUP_SETTLED = 1.1;
const WARMUP_MIN_RUNS = 4;
const WARMUP_MAX_RUNS = 8;

async function warmUp(e: Entrant, scenario: ScenarioKey, cfg: Config, died: Promise<never>): Promise<number[]> {
  const rates: number[] = [];
  while (rates.length < WARMUP_MAX_RUNS) {
    rates.push((await measure(e, scenario, cfg, true, died)).rate);
    const n = rates.length;
    if (n >= WARMUP_MIN_RUNS && rates[n - 1]! < rates[n - 2]! * WARMUP_SETTLED) break;
  }
  return rates;
}

// ---- Report ----

type Results = Map<ContenderKey, Map<ScenarioKey, Sample[]>>;

function med(results: Results, key: ContenderKey, scenario: ScenarioKey, field: keyof Sample): number | null {
  const samples = results.get(key)?.get(scenario) ?? [];
  const values = samples.map((s) => s[field]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return values.length ? median(values) : null;
}

function fmt(v: number | null, digits = 0): string {
  if (v === null) return '-';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/**
 * The median of per-round ratios: each round measures the contenders back to back, so pairing them
 * cancels most of what other work on a shared machine does to both.
 */
function pairedRatio(results: Results, key: ContenderKey, base: ContenderKey, scenario: ScenarioKey, field: keyof Sample): number | null {
  const a = results.get(key)?.get(scenario) ?? [];
  const b = results.get(base)?.get(scenario) ?? [];
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]![field];
    const y = b[i]![field];
    if (typeof x === 'number' && typeof y === 'number' && y > 0) ratios.push(x / y);
  }
  return ratios.length ? median(ratios) : null;
}

function verdict(label: string, r: number | null, min: number): string {
  if (r === null) return `>= ${min} x ${label}: n/a`;
  return `>= ${min} x ${label}: ${r >= min ? 'met' : 'missed'}`;
}

function report(results: Results, cfg: Config, loadAtStart: number): void {
  const rows: { label: string; scenario: ScenarioKey; field: keyof Sample; digits: number; targets: [string, number][] }[] = [];
  const mib = (cfg.bulkBytes / 1024 ** 2).toLocaleString('en-US', { maximumFractionDigits: 1 });
  if (cfg.only !== 'rpc') {
    const bulkTargets: [string, number][] = [['net', 0.85], ['http2', 1.5]];
    rows.push({ label: `bulk ${mib} MiB, 1 stream (MB/s)`, scenario: 'bulk', field: 'rate', digits: 0, targets: bulkTargets });
    rows.push({ label: `bulk ${mib} MiB, ${cfg.streams} streams (MB/s)`, scenario: 'bulk16', field: 'rate', digits: 0, targets: bulkTargets });
  }
  if (cfg.only !== 'bulk') {
    rows.push({ label: `small requests, ${cfg.inflight} in flight (req/s)`, scenario: 'rpc', field: 'rate', digits: 0, targets: [['http2', 5]] });
    rows.push({ label: 'small requests p50 latency (µs)', scenario: 'rpc', field: 'p50Us', digits: 0, targets: [] });
    rows.push({ label: 'small requests p99 latency (µs)', scenario: 'rpc', field: 'p99Us', digits: 0, targets: [] });
  }
  const header = ['scenario', 'dfs', 'raw net', 'http2', 'dfs/raw', 'dfs/http2', 'targets'];
  const table: string[][] = [header];
  const cpuTable: string[][] = [['CPU per unit, client + server', 'dfs', 'raw net', 'http2']];
  for (const row of rows) {
    const dfs = med(results, 'dfs', row.scenario, row.field);
    const net = med(results, 'net', row.scenario, row.field);
    const h2 = med(results, 'http2', row.scenario, row.field);
    const ratios: Record<string, number | null> = {
      net: pairedRatio(results, 'dfs', 'net', row.scenario, row.field),
      http2: pairedRatio(results, 'dfs', 'http2', row.scenario, row.field),
    };
    table.push([
      row.label, fmt(dfs), fmt(net), fmt(h2), fmt(ratios.net!, 2), fmt(ratios.http2!, 2),
      row.targets.map(([k, min]) => verdict(k === 'net' ? 'raw net' : k, ratios[k]!, min)).join('; '),
    ]);
    if (row.field === 'rate') {
      const unit = row.scenario === 'rpc' ? 'µs per request' : 'ms per 100 MB';
      const scale = row.scenario === 'rpc' ? 1 : 0.1;
      const cell = (k: ContenderKey): string => {
        const c = med(results, k, row.scenario, 'clientCpuUs');
        const s = med(results, k, row.scenario, 'serverCpuUs');
        return c === null || s === null ? '-' : `${fmt(c * scale, 1)} + ${fmt(s * scale, 1)}`;
      };
      cpuTable.push([`${row.label.replace(/ \(.*\)$/, '')}, ${unit}`, cell('dfs'), cell('net'), cell('http2')]);
    }
  }
  const print = (t: string[][]): void => {
    const widths = t[0]!.map((_, i) => Math.max(...t.map((r) => r[i]!.length)));
    for (const [n, r] of t.entries()) {
      console.log(r.map((cell, i) => (i === 0 || i === r.length - 1 && t === table ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd());
      if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
    }
  };
  const rpcLimit = cfg.rpcCount < Infinity ? `${cfg.rpcCount} requests (at most ${cfg.rpcSeconds} s)` : `${cfg.rpcSeconds} s`;
  console.log('');
  console.log(`dfs wire benchmark: loopback 127.0.0.1, node ${process.version}, ${cpus().length} cores, load average ${loadAtStart.toFixed(2)} at start; median of ${cfg.rounds} round(s)`);
  console.log(`Each figure is the median over rounds; each ratio is the median of the rounds' ratios (contenders run back to back, in rotated order).`);
  console.log(`Warm-up: each contender repeats each scenario, unmeasured, until its rate climbs less than ${Math.round(WARMUP_SETTLED * 100 - 100)}% (${WARMUP_MIN_RUNS} to ${WARMUP_MAX_RUNS} runs).`);
  console.log(`MB = 1e6 bytes. Bulk: uploads in ${fmt(cfg.chunk / 1024)} KiB writes, timed until the server confirms the last byte.`);
  if (cfg.prerollBytes > 0) console.log(`Each measured bulk run follows ${fmt(cfg.prerollBytes / 1024 ** 2)} MiB sent unmeasured by the same contender, so it starts from a busy process.`);
  console.log(`Small requests: ${RPC_BODY_BYTES} B request and response bodies, ${cfg.inflight} in flight on one connection, ${rpcLimit} per run.`);
  console.log(`raw net: bare sockets (one per stream; 68-byte length-prefixed frames echoed for small requests), the ceiling.`);
  console.log(`http2: node:http2 with dfs's announced windows (1 MiB stream, 16 MiB connection) and 64 KiB frames; ${cfg.streams} streams share one session.`);
  console.log(`  node:http2 keeps those windows; dfs grows a stream's window while its reader keeps up, to 16 MiB (wire-spec.md §7.5).`);
  console.log('');
  print(table);
  console.log('');
  print(cpuTable);
  console.log('');
}

function jsonLine(results: Results, cfg: Config, warmup: Record<string, Record<string, number[]>>): string {
  const m = (k: ContenderKey, s: ScenarioKey, f: keyof Sample): number | null => {
    const v = med(results, k, s, f);
    return v === null ? null : Math.round(v * 10) / 10;
  };
  const r = (s: ScenarioKey, base: ContenderKey): number | null => {
    const v = pairedRatio(results, 'dfs', base, s, 'rate');
    return v === null ? null : Math.round(v * 1000) / 1000;
  };
  return JSON.stringify({
    bulk_mb_s: m('dfs', 'bulk', 'rate'),
    bulk16_mb_s: m('dfs', 'bulk16', 'rate'),
    raw_mb_s: m('net', 'bulk', 'rate'),
    http2_mb_s: m('http2', 'bulk', 'rate'),
    rpc_per_s: m('dfs', 'rpc', 'rate'),
    rpc_p50_us: m('dfs', 'rpc', 'p50Us'),
    rpc_p99_us: m('dfs', 'rpc', 'p99Us'),
    raw_rpc_per_s: m('net', 'rpc', 'rate'),
    http2_rpc_per_s: m('http2', 'rpc', 'rate'),
    raw_bulk16_mb_s: m('net', 'bulk16', 'rate'),
    http2_bulk16_mb_s: m('http2', 'bulk16', 'rate'),
    raw_rpc_p50_us: m('net', 'rpc', 'p50Us'),
    raw_rpc_p99_us: m('net', 'rpc', 'p99Us'),
    http2_rpc_p50_us: m('http2', 'rpc', 'p50Us'),
    http2_rpc_p99_us: m('http2', 'rpc', 'p99Us'),
    bulk_vs_raw: r('bulk', 'net'),
    bulk_vs_http2: r('bulk', 'http2'),
    bulk16_vs_raw: r('bulk16', 'net'),
    bulk16_vs_http2: r('bulk16', 'http2'),
    rpc_vs_http2: r('rpc', 'http2'),
    bulk_bytes: cfg.bulkBytes,
    streams: cfg.streams,
    inflight: cfg.inflight,
    rounds: cfg.rounds,
    warmup: Object.fromEntries(Object.entries(warmup).map(([k, byScenario]) =>
      [k, Object.fromEntries(Object.entries(byScenario).map(([sc, rates]) => [sc, rates.map((r) => Math.round(r))]))])),
  });
}

// ---- Main ----

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  // Other work on a shared machine moves every figure; the ratios, measured side by side, move less.
  const loadAtStart = loadavg()[0]!;
  const children: ChildProcess[] = [];
  const killChildren = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.on('exit', killChildren);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      killChildren();
      process.exit(130);
    });
  }

  let finished = false;
  try {
    const entrants: Entrant[] = [];
    for (const key of cfg.contenders) {
      entrants.push({ key, contender: await loadContender(key), server: await ServerChild.start(key, children) });
    }
    // A server that dies mid-run fails the measurement at once instead of leaving it to the timeout.
    const died = new Promise<never>((_, reject) => {
      for (const e of entrants) {
        e.server.child.once('exit', (code, signal) => {
          if (!finished) reject(new Error(`the ${e.key} server exited (code ${code}, signal ${signal}) during the run`));
        });
      }
    });
    died.catch(() => {});

    const scenarios: ScenarioKey[] = cfg.only === 'rpc' ? ['rpc'] : cfg.only === 'bulk' ? ['bulk', 'bulk16'] : ['bulk', 'bulk16', 'rpc'];
    const results: Results = new Map(entrants.map((e) => [e.key, new Map(scenarios.map((s) => [s, [] as Sample[]]))]));
    const label = (s: ScenarioKey): string => (s === 'bulk16' ? `bulk x${cfg.streams}` : s === 'bulk' ? 'bulk x1' : 'small requests');

    console.error(`warm-up: runs of ${fmt(cfg.warmupBulkBytes / 1024 ** 2)} MiB bulk or ${cfg.warmupRpcSeconds} s of small requests, per contender and scenario, until the rate climbs less than ${Math.round(WARMUP_SETTLED * 100 - 100)}%`);
    const warmup: Record<string, Record<string, number[]>> = {};
    for (const e of entrants) {
      warmup[e.key] = {};
      for (const s of scenarios) {
        const rates = await warmUp(e, s, cfg, died);
        warmup[e.key]![s] = rates;
        console.error(`warm-up ${label(s).padEnd(14)} ${e.key.padEnd(5)} ${rates.map((r) => fmt(r)).join(', ')} ${s === 'rpc' ? 'req/s' : 'MB/s'}`);
      }
    }

    for (let round = 0; round < cfg.rounds; round++) {
      for (const s of scenarios) {
        // Rotate the order each round so a noisy neighbour on the shared machine does not always hit the same contender.
        const order = entrants.map((_, i) => entrants[(i + round) % entrants.length]!);
        for (const e of order) {
          const sample = await measure(e, s, cfg, false, died);
          results.get(e.key)!.get(s)!.push(sample);
          const extra = sample.p50Us !== undefined ? `, p50 ${fmt(sample.p50Us)} µs, p99 ${fmt(sample.p99Us!)} µs` : '';
          console.error(`round ${round + 1}/${cfg.rounds} ${label(s).padEnd(14)} ${e.key.padEnd(5)} ${fmt(sample.rate)} ${s === 'rpc' ? 'req/s' : 'MB/s'}${extra}`);
        }
      }
    }
    finished = true;
    report(results, cfg, loadAtStart);
    console.log(jsonLine(results, cfg, warmup));
  } finally {
    finished = true;
    killChildren();
  }
}

runMain('bench:wire', main);
