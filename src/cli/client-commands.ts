// The client subcommands of `dfs`: put, get, cat, ls, stat, rm, mkdir, mv and status. Each parses
// its arguments, talks to the cluster through the client API, and prints for people or as JSON.

import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, open, readlink, realpath, rename, rm, stat as statLocal } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { connect, type DfsClient } from '../client/client.js';
import { MAX_CHUNK_SIZE, MIN_CLI_CHUNK_SIZE } from '../client/chunker.js';
import type { ClusterStatus, EntryInfo, FsckFile, FsckResult, KeeperInfo, KeeperModeName, StatInfo } from '../client/types.js';
import { MAX_REPLICATION } from '../client/upload.js';
import { DfsError } from '../wire/errors.js';
import { normalisePath } from '../master/paths.js';
import { parseBytes, parseCommandArgs, parseDuration, parseIntOption, type CliIO, type Command, type Options, type ParsedArgs } from './command.js';
import { formatBytes, formatTable, formatTime } from './format.js';
import { ProgressBar } from './progress.js';

const MASTER_OPTION: Options = { master: { type: 'string' } };
const MASTER_HELP = '  --master HOST:PORT   the master (default: $DFS_MASTER)';

/** parseCommandArgs with --master, also checking the least number of positionals. */
export function parseClientArgs(command: string, argv: string[], options: Options, min: number, max: number): ParsedArgs {
  const parsed = parseCommandArgs(command, argv, { ...MASTER_OPTION, ...options }, max);
  if (!parsed.values.help && parsed.positionals.length < min) {
    // An option given without its value takes the next argument as one: when that value looks like
    // a path, say so, it is the likely slip.
    const all: Options = { ...MASTER_OPTION, ...options };
    const taken = Object.entries(parsed.values)
      .filter(([name, v]) => typeof v === 'string' && all[name]?.type === 'string' && /[/\\]/.test(v))
      .map(([name, v]) => `--${name} took ${JSON.stringify(v)} as its value`);
    throw new DfsError('INVALID_ARGUMENT',
      `missing arguments${taken.length > 0 ? ` (${taken.join(', ')})` : ''}; usage: ${clientCommands[command]?.usage.split('\n')[0] ?? command}`);
  }
  return parsed;
}

/** The master from --master, else $DFS_MASTER; INVALID_ARGUMENT naming both when neither is set. */
export function masterAddress(values: ParsedArgs['values'], env: NodeJS.ProcessEnv): string {
  const flag = values.master;
  if (typeof flag === 'string' && flag !== '') return flag;
  const fromEnv = env.DFS_MASTER;
  if (fromEnv !== undefined && fromEnv.trim() !== '') return fromEnv.trim();
  throw new DfsError('INVALID_ARGUMENT', 'no master given: pass --master HOST:PORT or set DFS_MASTER');
}

/**
 * dfs has no working directory: a relative remote path is taken from the root. Repeated and trailing
 * slashes are dropped; a path the master would refuse (too long, '.', '..', control characters) or
 * that was not valid UTF-8 is INVALID_ARGUMENT naming the problem before anything is sent.
 */
export function remotePath(text: string): string {
  // Node decodes each argument as UTF-8 and turns every invalid sequence into U+FFFD, so two
  // different byte strings would arrive as the same name: refused rather than guessed at.
  if (text.includes('\uFFFD')) {
    throw new DfsError('INVALID_ARGUMENT', `the path ${JSON.stringify(text)} is not valid UTF-8 (or holds U+FFFD, which the command line cannot tell apart from it)`);
  }
  return normalisePath(text.startsWith('/') ? text : `/${text}`);
}

async function withClient<T>(values: ParsedArgs['values'], io: CliIO, fn: (client: DfsClient) => Promise<T>): Promise<T> {
  const client = await connect({ master: masterAddress(values, io.env), signal: io.signal });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

function help(io: CliIO, command: Command): number {
  io.stdout.write(`${command.usage}\n`);
  return 0;
}

/** A local file to upload: NOT_FOUND or IS_A_DIRECTORY naming it, rather than an errno. */
export async function localSource(path: string): Promise<{ size: number }> {
  try {
    const st = await statLocal(path);
    if (st.isDirectory()) throw new DfsError('IS_A_DIRECTORY', `local path '${path}' is a directory; dfs put takes one file`);
    return { size: st.size };
  } catch (err) {
    if (err instanceof DfsError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DfsError('NOT_FOUND', `local file '${path}' does not exist`);
    if (code === 'ENOTDIR') throw new DfsError('NOT_FOUND', `local file '${path}' does not exist: a part of its path is a file`);
    if (code === 'EACCES' || code === 'EPERM') throw new DfsError('IO_ERROR', `local file '${path}' cannot be read: permission denied`);
    throw new DfsError('IO_ERROR', `local file '${path}': ${(err as Error).message}`, { cause: err });
  }
}

const put: Command = {
  summary: 'upload a local file',
  usage: `dfs put LOCAL REMOTE [--replication N] [--chunk-size BYTES] [--quiet]

Uploads the local file LOCAL as REMOTE, replacing any file there. The file
appears only once every chunk is stored; an interrupted upload leaves nothing.
A REMOTE ending in '/' names a directory: the file keeps its local name.

  --replication N      replicas per chunk, 1..${MAX_REPLICATION} (default: the master's, 3)
  --chunk-size BYTES   chunk size, a whole number of bytes from 4KiB to 64MiB
                       (suffixes KiB, MiB, GiB; default 8MiB)
  --quiet, -q          no progress bar
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('put', argv, {
      replication: { type: 'string' }, 'chunk-size': { type: 'string' }, quiet: { type: 'boolean', short: 'q' },
    }, 2, 2);
    if (values.help) return help(io, this);
    const [local, remoteArg] = positionals as [string, string];
    const replication = typeof values.replication === 'string' ? parseIntOption(values.replication, '--replication', 1, MAX_REPLICATION) : undefined;
    const chunkSize = typeof values['chunk-size'] === 'string' ? parseBytes(values['chunk-size'], '--chunk-size') : undefined;
    if (chunkSize !== undefined && (chunkSize < MIN_CLI_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE)) {
      throw new DfsError('INVALID_ARGUMENT', `--chunk-size ${values['chunk-size']} is outside 4KiB..64MiB`);
    }
    const remote = remotePath(remoteArg.endsWith('/') ? remoteArg + basename(local) : remoteArg);
    const { size } = await localSource(local);
    const master = masterAddress(values, io.env);
    const bar = new ProgressBar(io.stderr, size, ProgressBar.wanted(io.stderr, values.quiet === true));
    try {
      await withClient({ master }, io, (client) => client.put(remote, createReadStream(local, { highWaterMark: 1024 * 1024 }), {
        signal: io.signal,
        ...(replication === undefined ? {} : { replication }),
        ...(chunkSize === undefined ? {} : { chunkSize }),
        onProgress: (p) => bar.update(p.bytes),
      }));
    } catch (err) {
      bar.clear();
      throw err;
    }
    bar.update(size);
    bar.finish();
    return 0;
  },
};

/** Where `get` writes: LOCAL, or LOCAL/<name> when LOCAL is a directory (like cp), or ./<name> when omitted. */
export async function localTarget(remote: string, local: string | undefined): Promise<string> {
  const name = basename(remote);
  if (local === undefined) return resolve(name);
  const st = await statLocal(local).catch(() => null);
  return st?.isDirectory() ? join(resolve(local), name) : resolve(local);
}

/**
 * How `get` writes a local path: 'replace' writes a temporary file beside `path`, fsyncs it and renames it
 * over `path` (a regular file or nothing yet); 'stream' writes straight into `path`, which is a device,
 * FIFO or socket that must stay what it is (like `curl -o /dev/null`). A symlink is followed: the
 * link stays and its target is written.
 */
export interface LocalWritePlan {
  mode: 'replace' | 'stream';
  path: string;
}

export async function localWritePlan(path: string): Promise<LocalWritePlan> {
  const original = path;
  for (let links = 0; links < 40; links++) {
    const lst = await lstat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw localError(err, path);
    });
    if (lst === null) return { mode: 'replace', path };
    if (lst.isSymbolicLink()) {
      const st = await statLocal(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return null;
        throw localError(err, path);
      });
      // A dangling link: create its target, as cp does.
      if (st === null) {
        path = resolve(dirname(path), await readlink(path));
        continue;
      }
      if (st.isDirectory()) throw new DfsError('IS_A_DIRECTORY', `'${original}' is a directory`);
      // A link to a device or pipe (/dev/stdout) is opened through the link: it may have no path of its own.
      if (!st.isFile()) return { mode: 'stream', path };
      return { mode: 'replace', path: await realpath(path) };
    }
    if (lst.isDirectory()) throw new DfsError('IS_A_DIRECTORY', `'${original}' is a directory`);
    return { mode: lst.isFile() ? 'replace' : 'stream', path };
  }
  throw new DfsError('IO_ERROR', `'${original}': too many levels of symbolic links`);
}

function localError(err: unknown, path: string): DfsError {
  if (err instanceof DfsError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new DfsError('NOT_FOUND', `local directory '${dirname(path)}' does not exist`);
  if (code === 'ENOTDIR') return new DfsError('NOT_A_DIRECTORY', `'${dirname(path)}' is not a directory (a part of it is a file)`);
  if (code === 'EACCES' || code === 'EPERM') return new DfsError('IO_ERROR', `cannot write '${path}': permission denied`);
  if (code === 'EISDIR') return new DfsError('IS_A_DIRECTORY', `'${path}' is a directory`);
  return new DfsError('IO_ERROR', `writing '${path}' failed: ${(err as Error).message}`, { cause: err });
}

async function download(client: DfsClient, remote: string, dest: string | '-', io: CliIO, quiet: boolean): Promise<void> {
  // Decide how to write before fetching anything, so a directory in the way fails first.
  const plan = dest === '-' ? null : await localWritePlan(dest);
  const stream = await client.get(remote, { signal: io.signal });
  const bar = new ProgressBar(io.stderr, stream.size, dest !== '-' && ProgressBar.wanted(io.stderr, quiet));
  let bytes = 0;
  async function* counted(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const piece of source) {
      bytes += piece.length;
      bar.update(bytes);
      yield piece;
    }
  }
  if (plan === null) {
    await pipeline(stream, counted, io.stdout, { end: false });
    return;
  }
  if (plan.mode === 'stream') {
    try {
      await pipeline(stream, counted, createWriteStream(plan.path, { flags: 'w' }));
    } catch (err) {
      bar.clear();
      throw localError(err, plan.path);
    }
    bar.finish();
    return;
  }
  // Write beside the target, fsync, and rename at the end, so the target is never a partial file.
  const target = plan.path;
  const tmp = join(dirname(target), `.${basename(target)}.${randomBytes(4).toString('hex')}.dfs-part`);
  try {
    await pipeline(stream, counted, createWriteStream(tmp, { flags: 'wx' }));
    const handle = await open(tmp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, target);
  } catch (err) {
    bar.clear();
    await rm(tmp, { force: true }).catch(() => {});
    throw localError(err, target);
  }
  bar.finish();
}

const get: Command = {
  summary: 'download a file (to stdout with -)',
  usage: `dfs get REMOTE [LOCAL | -] [--quiet]

Downloads REMOTE to LOCAL (default: its name in the current directory), or to
stdout with '-'. Each chunk is checked against its SHA-256 and read from
another replica if one fails.

What LOCAL is decides how it is written:
  missing or a regular file   written to a temporary file beside it, fsynced,
                              then renamed over it: LOCAL is replaced
                              atomically and never seen half written
  a directory                 the file goes inside it under REMOTE's name, as
                              with cp
  a symbolic link             the link stays; its target is replaced as above
  a device, FIFO or socket    written straight into it (no temporary file), so
                              /dev/null or a named pipe stays what it is

  --quiet, -q          no progress bar
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('get', argv, { quiet: { type: 'boolean', short: 'q' } }, 1, 2);
    if (values.help) return help(io, this);
    const remote = remotePath(positionals[0]!);
    const dest = positionals[1] === '-' ? '-' : await localTarget(remote, positionals[1]);
    await withClient(values, io, (client) => download(client, remote, dest, io, values.quiet === true));
    return 0;
  },
};

const cat: Command = {
  summary: 'print a file to stdout',
  usage: `dfs cat REMOTE

Writes the file REMOTE to stdout, verified chunk by chunk.

${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('cat', argv, {}, 1, 1);
    if (values.help) return help(io, this);
    const remote = remotePath(positionals[0]!);
    await withClient(values, io, (client) => download(client, remote, '-', io, true));
    return 0;
  },
};

/** ls output: names (directories with '/'), or with -l one row per entry. */
export function formatListing(entries: readonly EntryInfo[], long: boolean): string {
  const name = (e: EntryInfo) => (e.type === 'directory' ? `${e.name}/` : e.name);
  if (!long) return entries.map(name).join('\n');
  return formatTable(entries.map((e) => [
    e.type === 'directory' ? 'd' : '-',
    e.type === 'directory' ? '-' : String(e.replication),
    e.type === 'directory' ? `${e.count} ${e.count === 1 ? 'entry' : 'entries'}` : formatBytes(e.size),
    formatTime(e.mtime),
    name(e),
  ]), new Set([1, 2]));
}

const ls: Command = {
  summary: 'list a directory',
  usage: `dfs ls [-l] [--json] [PATH]

Lists the directory PATH (default /). For a file, shows that file.

  -l                   long form: type, replication, size, modification time (UTC)
  --json               entries as JSON: name, type, size, replication, mtime
                       (ms since the epoch), chunkSize, and count (a file's
                       chunks, a directory's entries); 0 where a directory has none
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('ls', argv, { long: { type: 'boolean', short: 'l' }, json: { type: 'boolean' } }, 0, 1);
    if (values.help) return help(io, this);
    const path = remotePath(positionals[0] ?? '/');
    const entries = await withClient(values, io, (client) => client.list(path, { signal: io.signal }));
    const text = values.json ? JSON.stringify(entries, null, 2) : formatListing(entries, values.long === true);
    if (text !== '') io.stdout.write(`${text}\n`);
    return 0;
  },
};

/** stat output: the entry's fields, then for a file one row per chunk with its replicas. */
export function formatStat(info: StatInfo): string {
  const lines = [
    `path:        ${info.path}`,
    `type:        ${info.type}`,
  ];
  if (info.type === 'directory') {
    lines.push(`entries:     ${info.count}`, `modified:    ${formatTime(info.mtime)}`);
    return lines.join('\n');
  }
  lines.push(
    `size:        ${formatBytes(info.size)} (${info.size} bytes)`,
    `replication: ${info.replication}`,
    `chunk size:  ${formatBytes(info.chunkSize)}`,
    `chunks:      ${info.chunks.length}`,
    `modified:    ${formatTime(info.mtime)}`,
  );
  if (info.chunks.length > 0) {
    const rows = [['#', 'CHUNK', 'SIZE', 'SHA-256', 'REPLICAS']];
    info.chunks.forEach((c, i) => rows.push([
      String(i),
      c.id,
      formatBytes(c.size),
      `${c.sha256.slice(0, 16)}…`,
      c.replicas.length === 0 ? 'none' : c.replicas.map((r) => `${r.address} (${r.id.slice(0, 8)}${r.alive ? '' : ', dead'})`).join(', '),
    ]));
    lines.push('', formatTable(rows, new Set([0, 2])));
  }
  return lines.join('\n');
}

const stat: Command = {
  summary: 'show a file\'s chunks and where each replica lives',
  usage: `dfs stat [--json] PATH

Shows what PATH is; for a file, its chunks, their checksums and the keepers
holding each replica (marked dead when the master no longer hears from them).

  --json               as JSON
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('stat', argv, { json: { type: 'boolean' } }, 1, 1);
    if (values.help) return help(io, this);
    const path = remotePath(positionals[0]!);
    const info = await withClient(values, io, (client) => client.stat(path, { signal: io.signal }));
    io.stdout.write(`${values.json ? JSON.stringify(info, null, 2) : formatStat(info)}\n`);
    return 0;
  },
};

const rmCommand: Command = {
  summary: 'remove a file or directory',
  usage: `dfs rm [-r] PATH

Removes the file or empty directory PATH; with -r, a directory and everything below it.

  -r, --recursive      remove directories and their contents
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('rm', argv, { recursive: { type: 'boolean', short: 'r' } }, 1, 1);
    if (values.help) return help(io, this);
    const path = remotePath(positionals[0]!);
    await withClient(values, io, (client) => client.remove(path, { recursive: values.recursive === true, signal: io.signal }));
    return 0;
  },
};

const mkdir: Command = {
  summary: 'create a directory',
  usage: `dfs mkdir [-p] PATH

Creates the directory PATH; with -p, also its missing parents, and no error if it exists.

  -p, --parents        create parents as needed
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('mkdir', argv, { parents: { type: 'boolean', short: 'p' } }, 1, 1);
    if (values.help) return help(io, this);
    const path = remotePath(positionals[0]!);
    await withClient(values, io, (client) => client.mkdir(path, { parents: values.parents === true, signal: io.signal }));
    return 0;
  },
};

const mv: Command = {
  summary: 'rename or move a file or directory',
  usage: `dfs mv SRC DST

Renames SRC to DST, atomically. No data moves: only the namespace changes. As
with put, a DST ending in '/' or naming an existing directory means "into that
directory": SRC keeps its name there (dfs mv /a.txt /docs/ is /docs/a.txt).
Like rename(2), a file replaces an existing file at DST (whose chunks become
garbage), and a directory replaces only an empty directory.

${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('mv', argv, {}, 2, 2);
    if (values.help) return help(io, this);
    const src = remotePath(positionals[0]!);
    const dstArg = positionals[1]!;
    const dst = remotePath(dstArg);
    await withClient(values, io, async (client) => {
      const into = dstArg.endsWith('/') || (await isDirectory(client, dst, io.signal));
      await client.rename(src, into ? remotePath(`${dst}/${basename(src)}`) : dst, { signal: io.signal });
    });
    return 0;
  },
};

/** Whether `path` is a directory in dfs; false when nothing is there. */
async function isDirectory(client: DfsClient, path: string, signal: AbortSignal): Promise<boolean> {
  try {
    return (await client.stat(path, { signal })).type === 'directory';
  } catch (err) {
    if (err instanceof DfsError && err.code === 'NOT_FOUND') return false;
    throw err;
  }
}

export interface StatusTotals {
  keepers: number;
  alive: number;
  dead: number;
  /** Capacity and use of the keepers alive now. */
  capacity: number;
  used: number;
}

export function statusTotals(status: ClusterStatus): StatusTotals {
  const alive = status.keepers.filter((k) => k.alive);
  return {
    keepers: status.keepers.length,
    alive: alive.length,
    dead: status.keepers.length - alive.length,
    capacity: alive.reduce((n, k) => n + k.capacity, 0),
    used: alive.reduce((n, k) => n + k.used, 0),
  };
}

function percent(used: number, capacity: number): string {
  return capacity > 0 ? `${Math.round((used / capacity) * 100)}%` : '-';
}

/** alive or dead, then what the operator or the disk says about the keeper. */
function keeperState(k: KeeperInfo): string {
  const parts = [k.alive ? 'alive' : `dead (${Math.round(k.lastSeenMs / 1000)}s)`];
  if (k.mode === 'maintenance') parts.push(`maintenance until ${new Date(k.modeUntil).toISOString().slice(11, 19)} UTC`);
  if (k.mode === 'draining') parts.push(k.drained ? 'drained: safe to remove' : 'draining');
  if (k.diskError) parts.push(`disk error: ${k.diskError}`);
  else if (!k.acceptingWrites && k.mode === 'normal' && k.alive) parts.push('full');
  return parts.join(', ');
}

/** status output: one row per keeper, then the totals. */
export function formatStatus(status: ClusterStatus): string {
  const t = statusTotals(status);
  const rows = [['KEEPER', 'ADDRESS', 'ZONE', 'STATE', 'CAPACITY', 'USED', 'USE%', 'CHUNKS']];
  const keepers = [...status.keepers].sort((a, b) => a.address.localeCompare(b.address));
  for (const k of keepers) {
    rows.push([
      k.id, k.address, k.zone || '-', keeperState(k),
      k.capacity > 0 ? formatBytes(k.capacity) : '-', formatBytes(k.used), percent(k.used, k.capacity), String(k.chunks),
    ]);
  }
  const summary = [
    `keepers: ${t.alive} alive, ${t.dead} dead`,
    `capacity: ${formatBytes(t.capacity)}, used ${formatBytes(t.used)} (${percent(t.used, t.capacity)}) on live keepers`,
    `files: ${status.files}, chunks: ${status.chunks}`,
    `replication: ${status.underReplicated} chunk(s) under-replicated, ${status.missing} missing; ` +
      `copies in flight ${status.repairsInFlight}, ${status.repaired} repaired, ${formatBytes(status.repairBytesPerS)}/s; ` +
      `garbage ${status.garbage} chunk(s)`,
  ];
  return `${status.keepers.length > 0 ? `${formatTable(rows, new Set([4, 5, 6, 7]))}\n\n` : ''}${summary.join('\n')}`;
}

const status: Command = {
  summary: 'show keepers, their space and the cluster totals',
  usage: `dfs status [--json]

Lists every keeper the master knows: address, zone, state, capacity, space
used and chunks held; then the totals. The state is alive or dead (with the
seconds since its last report), then what applies of: maintenance until a time,
draining, "drained: safe to remove", full, or the keeper's last disk error.
The replication line counts chunks below their replication factor (missing
ones have no live replica), copies between keepers in flight, chunks repaired
since the master started and the copy rate, and chunks awaiting garbage
collection.

  --json               as JSON
${MASTER_HELP}`,
  async run(argv, io) {
    const { values } = parseClientArgs('status', argv, { json: { type: 'boolean' } }, 0, 0);
    if (values.help) return help(io, this);
    const st = await withClient(values, io, (client) => client.status({ signal: io.signal }));
    io.stdout.write(`${values.json ? JSON.stringify({ ...st, totals: statusTotals(st) }, null, 2) : formatStatus(st)}\n`);
    return 0;
  },
};

/** The operator's keeper commands, `dfs keeper ACTION ID`, as opposed to running one. */
const KEEPER_ACTIONS: Record<string, KeeperModeName> = { maintenance: 'maintenance', drain: 'draining', normal: 'normal' };
/** Longest maintenance window: a keeper away for longer should be drained instead. */
const MAX_MAINTENANCE_MS = 7 * 24 * 3600 * 1000;

export const keeperAdmin: Command = {
  summary: 'put a keeper in maintenance, drain it, return it to normal, or forget it',
  usage: `dfs keeper maintenance ID [--for DURATION]
dfs keeper drain ID
dfs keeper normal ID
dfs keeper forget ID

ID is a keeper's id (or a unique prefix of 4 or more characters) or its
address, as dfs status shows them.

  maintenance   a planned restart: for DURATION (default 30m) the keeper's
                replicas still count, so its absence starts no repair
  drain         no new chunks; every replica is copied to other keepers and
                then released; dfs status shows "drained: safe to remove"
  normal        ends maintenance or draining
  forget        removes a stopped keeper that holds nothing a file needs
                (drained, or never used) from the cluster for good

  --for DURATION       maintenance window, such as 10m or 2h (default 30m)
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('keeper', argv, { for: { type: 'string' } }, 1, 2);
    if (values.help) return help(io, this);
    const [action, ref] = positionals as [string, string | undefined];
    if (action !== 'forget' && !(action in KEEPER_ACTIONS)) {
      throw new DfsError('INVALID_ARGUMENT', `unknown action '${action}': use dfs keeper maintenance|drain|normal|forget ID, or dfs keeper --master ... to run a keeper`);
    }
    if (ref === undefined) {
      throw new DfsError('INVALID_ARGUMENT', `dfs keeper ${action} needs the keeper: dfs keeper ${action} ID (ids are in dfs status)`);
    }
    if (action === 'forget') {
      if (values.for !== undefined) throw new DfsError('INVALID_ARGUMENT', '--for applies to maintenance only');
      const id = await withClient(values, io, (client) => client.forgetKeeper(ref, { signal: io.signal }));
      io.stdout.write(`keeper ${id}: forgotten\n`);
      return 0;
    }
    const mode = KEEPER_ACTIONS[action]!;
    if (values.for !== undefined && mode !== 'maintenance') throw new DfsError('INVALID_ARGUMENT', '--for applies to maintenance only');
    const durationMs = values.for === undefined ? 0 : parseDuration(values.for as string, '--for');
    if (values.for !== undefined && (durationMs < 1000 || durationMs > MAX_MAINTENANCE_MS)) {
      throw new DfsError('INVALID_ARGUMENT', `--for must be from 1s to 7d, got ${values.for}; a longer absence is a drain`);
    }
    const r = await withClient(values, io, (client) => client.keeperMode(ref, mode, { durationMs, signal: io.signal }));
    const what = r.mode === 'maintenance' ? `in maintenance until ${new Date(r.until).toISOString()}` :
      r.mode === 'draining' ? (r.drained ? 'drained: safe to remove' : 'draining; dfs status shows when it is safe to remove') : 'back to normal';
    io.stdout.write(`keeper ${r.keeperId}: ${what}\n`);
    return 0;
  },
};

const HEALTH_LABEL: Record<FsckFile['health'], string> = {
  healthy: 'HEALTHY', 'under-replicated': 'UNDER-REPLICATED', corrupt: 'CORRUPT', missing: 'MISSING',
};

export function formatFsck(path: string, r: FsckResult): string {
  const lines = r.list.map((f) => {
    const detail = f.health === 'healthy' ? '' :
      ` (${[f.underReplicated && `${f.underReplicated} under-replicated`, f.corrupt && `${f.corrupt} corrupt`, f.missing && `${f.missing} missing`]
        .filter(Boolean).join(', ')} of ${f.chunks} chunks)`;
    return `${HEALTH_LABEL[f.health]} ${f.path}${detail}`;
  });
  const verdict = r.missing + r.corrupt > 0 ? 'CORRUPT' : r.underReplicated > 0 ? 'HEALTHY, with repairs pending' : 'HEALTHY';
  lines.push(
    `${lines.length > 0 ? '\n' : ''}fsck ${path}: ${r.files} file(s): ${r.healthy} healthy, ${r.underReplicated} under-replicated, ` +
      `${r.corrupt} corrupt, ${r.missing} missing`,
    `status: ${verdict}`,
  );
  return lines.join('\n');
}

const fsckCommand: Command = {
  summary: 'check the health of files: healthy, under-replicated, corrupt or missing',
  usage: `dfs fsck [--all] [--json] [PATH]

Checks every file under PATH (default /): a file is under-replicated when a
chunk has fewer good replicas than its replication factor (repair is on its
way), corrupt when a chunk's only replicas are known bad, and missing when a
chunk has no replica on a live keeper. Lists the unhealthy files, then totals.
Exits 1 when any file is corrupt or missing, 0 otherwise.

  --all                list healthy files too
  --json               as JSON
${MASTER_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseClientArgs('fsck', argv, { all: { type: 'boolean' }, json: { type: 'boolean' } }, 0, 1);
    if (values.help) return help(io, this);
    const path = remotePath(positionals[0] ?? '/');
    const r = await withClient(values, io, (client) => client.fsck(path, { all: values.all === true, signal: io.signal }));
    io.stdout.write(`${values.json ? JSON.stringify(r, null, 2) : formatFsck(path, r)}\n`);
    return r.missing + r.corrupt > 0 ? 1 : 0;
  },
};

const balance: Command = {
  summary: 'even out disk use across keepers',
  usage: `dfs balance [--threshold PERCENT]

Moves replicas from keepers filled more than PERCENT points above the
cluster's mean to keepers below it, and onto a keeper more than PERCENT points
below the mean (a new one) from every keeper above it (default 10). Each move
copies first and drops the old replica after, so no chunk loses a replica on
the way. Moves run in the background, a batch at a time, at the keepers' repair
bandwidth, until nothing is left to move; dfs status shows copies in flight.

  --threshold N        percentage points of tolerated imbalance, 0..100
${MASTER_HELP}`,
  async run(argv, io) {
    const { values } = parseClientArgs('balance', argv, { threshold: { type: 'string' } }, 0, 0);
    if (values.help) return help(io, this);
    const text = values.threshold as string | undefined;
    const threshold = text === undefined ? 10 : Number(text);
    if (text !== undefined && (!/^\d+$/.test(text) || threshold > 100)) {
      throw new DfsError('INVALID_ARGUMENT', `--threshold must be a whole percentage from 0 to 100, got ${JSON.stringify(text)}`);
    }
    const moves = await withClient(values, io, (client) => client.balance({ thresholdPercent: threshold, signal: io.signal }));
    io.stdout.write(`${moves} move(s) scheduled; more follow as they finish, until the keepers are within ${threshold} points of the mean (dfs status shows copies in flight)\n`);
    return 0;
  },
};

export const clientCommands: Record<string, Command> = { put, get, cat, ls, stat, rm: rmCommand, mkdir, mv, status, fsck: fsckCommand, balance };
