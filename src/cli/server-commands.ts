// `dfs master`, `dfs keeper` and `dfs dev`: the long-running roles. Each runs until SIGINT or
// SIGTERM and then shuts down gracefully.

import { statfs } from 'node:fs/promises';
import { isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { DfsError } from '../wire/errors.js';
import { parseAddress, formatAddress } from '../transport/net.js';
import { startMaster } from '../master/server.js';
import { startKeeper } from '../keeper/keeper.js';
import { INLINE_HASH_MAX } from '../workers/digest.js';
import { parseBytes, parseCommandArgs, parseDuration, parseIntOption, type CliIO, type Command } from './command.js';
import { keeperAdmin } from './client-commands.js';

function required(command: string, values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new DfsError('INVALID_ARGUMENT', `--${name} is required; see dfs ${command} --help`);
  return v;
}

function untilStopped(signal: AbortSignal): Promise<void> {
  return new Promise((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
}

/** A duration option within bounds, in ms; a bare number is milliseconds, as these options always took. */
function durationBetween(text: string, what: string, min: number, max: number): number {
  const ms = parseDuration(text, what, { bareMs: true });
  if (ms < min || ms > max) throw new DfsError('INVALID_ARGUMENT', `${what} ${text} is outside ${min}ms..${max / 1000}s`);
  return ms;
}

const logTo = (io: CliIO, who: string) => (line: string) => io.stderr.write(`${new Date().toISOString()} ${who}: ${line}\n`);

export const master: Command = {
  summary: 'run the master tracker',
  usage: `dfs master --listen HOST:PORT --data DIR [--replication N] [--min-replicas N] [--dead-after DURATION] ...
                  [--checkpoint-entries N] [--checkpoint-bytes BYTES]

Runs the master tracker: namespace, placement and keeper health. Every change is
journaled to DIR and fsynced before it is acknowledged. A checkpoint of the whole
state is written in the background once the journal grows past either limit, and
at shutdown; a start loads the newest checkpoint and replays the journal after it.

  --listen HOST:PORT   address to serve on (port 0 picks a free one)
  --data DIR           metadata directory (created if missing)
  --dead-after DURATION
                       a keeper silent this long is dead, such as 3s; a bare
                       number is milliseconds (default 3s)
  --replication N      replicas per chunk of a file that asks for none (default 3)
  --min-replicas N     durable replicas a chunk write needs (default 2; a file
                       with fewer replicas needs them all)
  --gc-grace DURATION  garbage waits this long before keepers delete it (default 10m)
  --upload-timeout DURATION
                       an upload idle this long is aborted (default 30m)
  --repair-copies N    copies each keeper takes part in at once, repair and
                       balancing together (default 4)
  --balance-interval DURATION
                       time between automatic balancing rounds; 0 turns the
                       balancer off (default 60s)
  --forget-dead-after DURATION
                       replicas on a keeper silent this long are let go once
                       their chunks have enough others (default 1h)
  --checkpoint-entries N
                       checkpoint after N journal entries (default 100000)
  --checkpoint-bytes BYTES
                       ... or after this much journal, such as 64MiB (default 64MiB)

Durations are written like 500ms, 30s, 10m, 2h.`,
  async run(argv, io) {
    const { values } = parseCommandArgs('master', argv, {
      listen: { type: 'string' }, data: { type: 'string' }, 'dead-after': { type: 'string' }, 'min-replicas': { type: 'string' },
      replication: { type: 'string' }, 'gc-grace': { type: 'string' }, 'upload-timeout': { type: 'string' }, 'repair-copies': { type: 'string' },
      'balance-interval': { type: 'string' }, 'forget-dead-after': { type: 'string' },
      'checkpoint-entries': { type: 'string' }, 'checkpoint-bytes': { type: 'string' },
    }, 0);
    const duration = (name: string) => (values[name] === undefined ? undefined : parseDuration(values[name] as string, `--${name}`));
    if (values.help) { io.stdout.write(`${this.usage}\n`); return 0; }
    const listen = parseAddress(required('master', values, 'listen'), '--listen');
    const handle = await startMaster({
      host: listen.host, port: listen.port, dataDir: resolve(required('master', values, 'data')),
      deadAfterMs: values['dead-after'] ? durationBetween(values['dead-after'] as string, '--dead-after', 100, 3_600_000) : undefined,
      minReplicas: values['min-replicas'] ? parseIntOption(values['min-replicas'] as string, '--min-replicas', 1, 16) : undefined,
      defaultReplication: values.replication ? parseIntOption(values.replication as string, '--replication', 1, 16) : undefined,
      gcGraceMs: duration('gc-grace'),
      uploadTimeoutMs: duration('upload-timeout'),
      copiesPerKeeper: values['repair-copies'] ? parseIntOption(values['repair-copies'] as string, '--repair-copies', 1, 256) : undefined,
      balanceIntervalMs: duration('balance-interval'),
      forgetDeadAfterMs: duration('forget-dead-after'),
      checkpointEntries: values['checkpoint-entries']
        ? parseIntOption(values['checkpoint-entries'] as string, '--checkpoint-entries', 1, 1e9) : undefined,
      checkpointBytes: values['checkpoint-bytes'] ? parseBytes(values['checkpoint-bytes'] as string, '--checkpoint-bytes') : undefined,
      log: logTo(io, 'master'),
    });
    await untilStopped(io.signal);
    await handle.close();
    return 0;
  },
};

/** A byte count option of at least `min`; INVALID_ARGUMENT naming the option otherwise. */
function bytesOption(text: string, what: string, min: number): number {
  const value = parseBytes(text, what);
  if (value < min) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is below the least allowed, ${min} bytes`);
  return value;
}

/** Whether a host means "every interface" when listening (and nothing when dialled): 0.0.0.0, or :: however written. */
function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || (isIPv6(host) && /^[0:]+$/.test(host));
}

export const keeper: Command = {
  summary: 'run a data keeper (or: keeper maintenance|drain|normal|forget ID)',
  usage: `dfs keeper --master HOST:PORT --listen HOST:PORT --data DIR [--capacity BYTES] [--zone NAME]
           [--advertise HOST:PORT] [--reserve BYTES] [--task-concurrency N] [--task-queue N]
           [--repair-bandwidth BYTES] [--scrub-rate BYTES] [--scrub-every DURATION]
           [--pack-max BYTES]

Runs a data keeper: stores chunks in DIR, takes part in write pipelines, serves
reads, reports to the master every second, carries out the master's repair tasks
and re-checks every stored chunk in the background. To put a running keeper in
maintenance or drain it, see dfs keeper maintenance --help.

  --master HOST:PORT        the master tracker
  --listen HOST:PORT        address to serve on and to advertise (port 0 picks a free one)
  --advertise HOST:PORT     address clients and other keepers reach this keeper at, when it
                            is not --listen's: required with a wildcard such as 0.0.0.0
  --data DIR                chunk directory (created if missing; one keeper per directory)
  --capacity BYTES          most bytes to store, such as 100GiB (default: the disk's free space)
  --zone NAME               failure zone; replicas of a chunk go to distinct zones (default: default)
  --reserve BYTES           stop taking new chunks when less than this is free on the disk or
                            within the capacity (default: 64MiB or 1% of the capacity, the smaller)
  --task-concurrency N      repair tasks (copy, delete, verify) run at once, 1..64 (default 4)
  --task-queue N            repair tasks waiting to run, 0..100000; more are refused with
                            UNAVAILABLE (default 1024)
  --repair-bandwidth BYTES  bytes per second all repair copies together may send, at least
                            64KiB (default 100MiB)
  --scrub-rate BYTES        bytes per second the background check re-reads, 0 to turn it off
                            (default: stored bytes / 6 days, at least 1MiB, so every chunk is
                            checked at least weekly)
  --scrub-every DURATION    least time from the start of one pass over every chunk to the
                            next, such as 10s or 1h (default 1m)
  --pack-max BYTES          chunks up to this size are appended to shared pack files, many
                            made durable by one fsync; larger ones get a file each. 0 gives
                            every chunk a file, at most 256KiB (default 64KiB)`,
  async run(argv, io) {
    // `dfs keeper WORD ...` is an operator's command about a running keeper, not a keeper to run.
    if (argv[0] !== undefined && !argv[0].startsWith('-')) return keeperAdmin.run(argv, io);
    const { values } = parseCommandArgs('keeper', argv, {
      master: { type: 'string' }, listen: { type: 'string' }, data: { type: 'string' }, capacity: { type: 'string' }, zone: { type: 'string' },
      reserve: { type: 'string' }, 'task-concurrency': { type: 'string' }, 'task-queue': { type: 'string' },
      'repair-bandwidth': { type: 'string' }, 'scrub-rate': { type: 'string' }, 'scrub-every': { type: 'string' },
      'pack-max': { type: 'string' }, advertise: { type: 'string' },
    }, 0);
    if (values.help) { io.stdout.write(`${this.usage}\n`); return 0; }
    const masterAddress = parseAddress(required('keeper', values, 'master'), '--master');
    const listen = parseAddress(required('keeper', values, 'listen'), '--listen');
    const advertised = values.advertise === undefined ? undefined : parseAddress(values.advertise as string, '--advertise');
    if (advertised === undefined && isWildcard(listen.host)) {
      // Told to the master as is, a wildcard would send every client and keeper to its own host.
      throw new DfsError('INVALID_ARGUMENT',
        `--listen ${values.listen as string} serves on every interface, and no other machine can reach ${listen.host}: give --advertise HOST:PORT too`);
    }
    if (advertised !== undefined && (isWildcard(advertised.host) || advertised.port === 0)) {
      throw new DfsError('INVALID_ARGUMENT', `--advertise ${values.advertise as string} must name a reachable host and a port other than 0`);
    }
    const advertise = advertised === undefined ? undefined : formatAddress(advertised);
    const text = (name: string) => values[name] as string | undefined;
    const options = {
      capacity: text('capacity') === undefined ? undefined : parseBytes(text('capacity')!, '--capacity'),
      reserve: text('reserve') === undefined ? undefined : parseBytes(text('reserve')!, '--reserve'),
      taskConcurrency: text('task-concurrency') === undefined ? undefined : parseIntOption(text('task-concurrency')!, '--task-concurrency', 1, 64),
      taskQueue: text('task-queue') === undefined ? undefined : parseIntOption(text('task-queue')!, '--task-queue', 0, 100_000),
      repairBandwidth: text('repair-bandwidth') === undefined ? undefined : bytesOption(text('repair-bandwidth')!, '--repair-bandwidth', 64 * 1024),
      scrubRate: text('scrub-rate') === undefined ? undefined : parseBytes(text('scrub-rate')!, '--scrub-rate'),
      scrubCycleMinMs: text('scrub-every') === undefined ? undefined : parseDuration(text('scrub-every')!, '--scrub-every'),
      packMax: text('pack-max') === undefined ? undefined : packMaxOption(text('pack-max')!),
    };
    const handle = await startKeeper({
      master: masterAddress, listen, dataDir: resolve(required('keeper', values, 'data')),
      zone: (values.zone as string | undefined) ?? 'default',
      ...(advertise === undefined ? {} : { advertise }),
      log: logTo(io, 'keeper'),
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    });
    await untilStopped(io.signal);
    await handle.close();
    return 0;
  },
};

export const dev: Command = {
  summary: 'start a local cluster: a master and three keepers, no configuration',
  usage: `dfs dev [--port PORT] [--data DIR] [--keepers N]

Starts a working local cluster in this process: a master on 127.0.0.1:PORT
(default 7070) and N keepers (default 3) on the ports after it, with data under
DIR (default ./.dfs-dev). Files get min(3, N) replicas unless they ask for
others, and a write needs min(2, N) of them. Stops cleanly on Ctrl-C; the data
stays for next time.`,
  async run(argv, io) {
    const { values } = parseCommandArgs('dev', argv, { port: { type: 'string' }, data: { type: 'string' }, keepers: { type: 'string' } }, 0);
    if (values.help) { io.stdout.write(`${this.usage}\n`); return 0; }
    const port = values.port ? parseIntOption(values.port as string, '--port', 1, 65535 - 16) : 7070;
    const count = values.keepers ? parseIntOption(values.keepers as string, '--keepers', 1, 16) : 3;
    const dir = resolve((values.data as string | undefined) ?? '.dfs-dev');
    const quiet = () => {};
    // Fewer keepers than the usual replication still make a cluster that takes writes.
    const m = await startMaster({
      host: '127.0.0.1', port, dataDir: `${dir}/master`, log: quiet, defaultReplication: Math.min(3, count), minReplicas: Math.min(2, count),
    }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') throw new DfsError('UNAVAILABLE', `port ${port} is in use; pick another with dfs dev --port`);
      throw err;
    });
    const keepers = [];
    try {
      // The keepers share one disk: each gets its share, so status and placement see the truth.
      const disk = await statfs(dir);
      const share = Math.floor((disk.bavail * disk.bsize) / count);
      for (let i = 1; i <= count; i++) {
        keepers.push(await startKeeper({
          master: parseAddress(m.address), listen: { host: '127.0.0.1', port: port + i }, dataDir: `${dir}/keeper${i}`,
          zone: `zone${i}`, log: quiet, capacity: share,
        }));
      }
    } catch (err) {
      for (const k of keepers) await k.close();
      await m.close();
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new DfsError('UNAVAILABLE', `a keeper port after ${port} is in use; pick another with dfs dev --port`);
      throw err;
    }
    // Print the banner only once the master hears every keeper, so the first command just works.
    for (let waited = 0; m.aliveKeepers() < count && waited < 10_000 && !io.signal.aborted; waited += 50) {
      await new Promise((r) => setTimeout(r, 50));
    }
    io.stdout.write(`dfs dev cluster is up
  master   ${m.address}
  keepers  ${keepers.map((k) => k.address).join(', ')}
  data     ${dir}

Try, in another terminal, in ${process.cwd()} (where npx finds this dfs):
  export DFS_MASTER=${m.address}
  npx dfs put README.md /docs/README.md
  npx dfs ls -l /docs
  npx dfs stat /docs/README.md
  npx dfs get /docs/README.md copy.md
  npx dfs status
  npx dfs fsck

Ctrl-C stops the cluster.
`);
    await untilStopped(io.signal);
    io.stdout.write('stopping...\n');
    for (const k of keepers) await k.close();
    await m.close();
    return 0;
  },
};

export const serverCommands: Record<string, Command> = { master, keeper, dev };
export { formatAddress };

function packMaxOption(value: string): number {
  const n = parseBytes(value, '--pack-max');
  if (n > INLINE_HASH_MAX) throw new DfsError('INVALID_ARGUMENT', `--pack-max ${value}: at most ${INLINE_HASH_MAX} bytes (256KiB)`);
  return n;
}
