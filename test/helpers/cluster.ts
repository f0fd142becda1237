// Real dfs processes for integration tests: a master and keepers started through the `dfs` binary
// on 127.0.0.1 with free ports and a temporary directory, killed and removed at the end.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type DfsClient } from '../../src/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = join(ROOT, 'src/cli/main.ts');

export interface DfsProcess {
  child: ChildProcess;
  address: string;
  log: string[];
}

/** Starts `dfs ARGS...` and resolves once a log line matching `ready` names its address. */
export function startDfs(args: string[], ready: RegExp): Promise<DfsProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`dfs ${args[0]} did not start in 30 s:\n${log.join('')}`)); }, 30_000);
    const onData = (d: Buffer) => {
      log.push(d.toString());
      if (log.length > 200) log.splice(0, log.length - 200);
      const m = ready.exec(log.join(''));
      if (m) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve({ child, address: m[1]!, log });
      }
    };
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`dfs ${args[0]} exited with ${code}:\n${log.join('')}`));
    };
    child.stderr!.on('data', onData);
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Runs a `dfs` client command to completion. */
export function runDfs(args: string[], master: string): Promise<{ code: number; stdout: Buffer; stderr: string; pid: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DFS_MASTER: master },
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  return new Promise((resolve) => child.once('close', (code) => resolve({
    code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString(), pid: child.pid ?? 0,
  })));
}

export async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await Promise.resolve().then(check).catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Resident memory of a process in bytes, from /proc; 0 when it is gone. */
export async function rssOf(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface Cluster {
  dir: string;
  master: DfsProcess;
  keepers: DfsProcess[];
  client: DfsClient;
  /** Starts one more keeper, or restarts keeper `index` on its old data directory. */
  startKeeper(index: number): Promise<DfsProcess>;
  /** Kills the master with SIGKILL and starts it again on the same port and data directory. */
  restartMaster(): Promise<DfsProcess>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  keepers: number;
  deadAfterMs?: number;
  /** More `dfs master` flags. */
  masterArgs?: string[];
  /** More `dfs keeper` flags, per keeper index. */
  keeperArgs?: (index: number) => string[];
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cluster-'));
  const masterArgs = (listen: string) => ['master', '--listen', listen, '--data', join(dir, 'master'),
    '--dead-after', String(options.deadAfterMs ?? 1500), ...(options.masterArgs ?? [])];
  let master = await startDfs(masterArgs('127.0.0.1:0'), /listening on (\S+?),/);
  const keepers: DfsProcess[] = [];
  const startKeeper = async (i: number) => {
    const k = await startDfs(
      ['keeper', '--master', master.address, '--listen', '127.0.0.1:0', '--data', join(dir, `keeper${i}`), '--zone', `z${i}`,
        ...(options.keeperArgs?.(i) ?? [])],
      /serving (\S+) from/,
    );
    keepers[i] = k;
    return k;
  };
  try {
    await Promise.all(Array.from({ length: options.keepers }, (_, i) => startKeeper(i)));
  } catch (err) {
    for (const p of [...keepers, master]) p?.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const client = await connect({ master: master.address });
  await waitFor(`${options.keepers} live keepers`, async () =>
    (await client.status()).keepers.filter((k) => k.alive).length === options.keepers);
  const cluster: Cluster = {
    dir, master, keepers, client, startKeeper,
    async restartMaster() {
      const old = master;
      if (old.child.exitCode === null && old.child.signalCode === null) {
        old.child.kill('SIGKILL');
        await new Promise((r) => old.child.once('exit', r));
      }
      // The same port: keepers and clients know the master by its address.
      master = await startDfs(masterArgs(old.address), /listening on (\S+?),/);
      cluster.master = master;
      return master;
    },
    async stop() {
      await client.close().catch(() => {});
      for (const p of [...keepers, cluster.master]) {
        if (p && p.child.exitCode === null && p.child.signalCode === null) {
          p.child.kill('SIGKILL');
          await new Promise((r) => p.child.once('exit', r));
        }
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}
