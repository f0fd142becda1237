// The dfs binary as a person runs it: usage, unknown commands, bad arguments and an unreachable
// master each give one clear line and a non-zero exit, never a stack trace.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

function dfs(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', main, ...args], { env: { ...process.env, DFS_MASTER: '', ...env }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

test('dfs --help lists every command; a command\'s --help shows its options', async () => {
  const top = await dfs(['--help']);
  assert.equal(top.code, 0);
  for (const name of ['master', 'keeper', 'dev', 'put', 'get', 'cat', 'ls', 'stat', 'rm', 'mkdir', 'mv', 'status', 'fsck', 'balance']) {
    assert.match(top.stdout, new RegExp(`^  ${name} `, 'm'), `${name} missing from dfs --help`);
  }
  const keeper = await dfs(['keeper', '--help']);
  assert.equal(keeper.code, 0);
  assert.match(keeper.stdout, /--capacity BYTES/);
});

test('an unknown command and a bad option fail with one line and exit 2', async () => {
  const unknown = await dfs(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  const bad = await dfs(['master', '--listen', 'nowhere', '--data', '/tmp/x']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, /--listen 'nowhere' is not HOST:PORT/);
  const missing = await dfs(['keeper', '--listen', '127.0.0.1:0']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--master is required/);
  const capacity = await dfs(['keeper', '--master', '127.0.0.1:1', '--listen', '127.0.0.1:0', '--data', '/tmp/x', '--capacity', 'lots']);
  assert.equal(capacity.code, 2);
  assert.match(capacity.stderr, /--capacity 'lots' is not a byte count/);
});

test('dfs keeper names each repair and health setting in --help and refuses a bad value with one line and exit 2', async () => {
  // A keeper started with a typo in one of these would otherwise repair at the wrong pace, or never.
  const help = await dfs(['keeper', '--help']);
  for (const flag of ['--reserve BYTES', '--task-concurrency N', '--task-queue N', '--repair-bandwidth BYTES', '--scrub-rate BYTES']) {
    assert.ok(help.stdout.includes(flag), `${flag} missing from dfs keeper --help`);
  }
  const base = ['keeper', '--master', '127.0.0.1:1', '--listen', '127.0.0.1:0', '--data', '/tmp/dfs-never-created'];
  const cases: [string[], RegExp][] = [
    [['--task-concurrency', '0'], /--task-concurrency 0 is outside 1\.\.64/],
    [['--task-concurrency', 'many'], /--task-concurrency 'many' is not a whole number/],
    [['--task-queue', '-1'], /--task-queue needs a value|--task-queue '-1'/],
    [['--task-queue', '100001'], /--task-queue 100001 is outside 0\.\.100000/],
    [['--repair-bandwidth', '1KiB'], /--repair-bandwidth '1KiB' is below the least allowed/],
    [['--repair-bandwidth', 'fast'], /--repair-bandwidth 'fast' is not a byte count/],
    [['--scrub-rate', '1.5'], /--scrub-rate '1.5' is not a whole number of bytes/],
    [['--reserve', 'some'], /--reserve 'some' is not a byte count/],
  ];
  for (const [args, message] of cases) {
    const r = await dfs([...base, ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, message);
  }
});

test('the operator\'s commands refuse bad arguments with one line and exit 2, before contacting a master', async () => {
  const env = { DFS_MASTER: '127.0.0.1:1' };
  const cases: [string[], RegExp][] = [
    [['keeper', 'drain'], /dfs keeper drain needs the keeper: dfs keeper drain ID/],
    [['keeper', 'maintenance', 'k1', '--for', 'soon'], /--for 'soon' is not a duration/],
    [['keeper', 'maintenance', 'k1', '--for', '10ms'], /--for must be from 1s to 7d/],
    [['keeper', 'drain', 'k1', '--for', '1h'], /--for applies to maintenance only/],
    [['balance', '--threshold', '-3'], /--threshold/],
    [['balance', '--threshold', '101'], /--threshold must be a whole percentage from 0 to 100/],
    [['fsck', 'a', 'b'], /too many arguments/],
    [['master', '--listen', '127.0.0.1:0', '--data', '/tmp/x', '--gc-grace', 'tomorrow'], /--gc-grace 'tomorrow' is not a duration/],
    [['master', '--listen', '127.0.0.1:0', '--data', '/tmp/x', '--gc-grace', '5'], /--gc-grace '5' needs a unit: 5ms, 5s, 5m or 5h/],
    [['master', '--listen', '127.0.0.1:0', '--data', '/tmp/x', '--dead-after', '2h'], /--dead-after 2h is outside 100ms\.\.3600s/],
    [['master', '--listen', '127.0.0.1:0', '--data', '/tmp/x', '--replication', '0'], /--replication 0 is outside 1\.\.16/],
    [['keeper', '--master', '127.0.0.1:1', '--listen', '0.0.0.0:7471', '--data', '/tmp/x'], /serves on every interface.*give --advertise HOST:PORT/],
    [['keeper', '--master', '127.0.0.1:1', '--listen', '[::]:7471', '--data', '/tmp/x'], /no other machine can reach ::/],
    [['keeper', '--master', '127.0.0.1:1', '--listen', '[0:0:0:0:0:0:0:0]:7471', '--data', '/tmp/x'], /serves on every interface/],
    [['keeper', '--master', '127.0.0.1:1', '--listen', '0.0.0.0:7471', '--advertise', '0.0.0.0:7471', '--data', '/tmp/x'], /--advertise 0\.0\.0\.0:7471 must name a reachable host/],
    [['keeper', '--master', '127.0.0.1:1', '--listen', '0.0.0.0:0', '--advertise', 'k1.example:0', '--data', '/tmp/x'], /a port other than 0/],
    [['keeper', 'maintenance', 'k1', '--for', '99999h'], /--for must be from 1s to 7d/],
    [['keeper', 'frobnicate', 'k1'], /unknown action 'frobnicate'/],
  ];
  for (const [args, message] of cases) {
    const r = await dfs(args, env);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, message);
  }
  const help = await dfs(['keeper', 'maintenance', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /dfs keeper drain ID/);
});

test('a client command without a master, or with an unreachable one, says so', async () => {
  const none = await dfs(['ls', '/']);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /master/i);
  const unreachable = await dfs(['ls', '/', '--master', '127.0.0.1:1']);
  assert.notEqual(unreachable.code, 0);
  assert.match(unreachable.stderr, /UNAVAILABLE|cannot connect/);
  assert.doesNotMatch(unreachable.stderr, /\n\s+at /, 'no stack trace');
});

test('an error names its command once', async () => {
  const missing = await dfs(['master', '--data', '/tmp/x']);
  assert.equal(missing.stderr, 'dfs master: --listen is required; see dfs master --help (INVALID_ARGUMENT)\n');
  const extra = await dfs(['dev', 'surplus']);
  assert.match(extra.stderr, /^dfs dev: too many arguments/);
  assert.doesNotMatch(extra.stderr, /dfs dev: dfs dev/);
});

test('a port in use, a data path that is a file, and an uncreatable data directory each give one line', async (t) => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const net = await import('node:net');
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.after(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  const inUse = await dfs(['master', '--listen', `127.0.0.1:${port}`, '--data', join(dir, 'm1')]);
  assert.equal(inUse.code, 1);
  // Log lines carry a timestamp; the error is the one line that does not, with no stack after it.
  const errorLines = (text: string) => text.trim().split('\n').filter((l) => !/^\d{4}-\d\d-\d\dT/.test(l));
  assert.deepEqual(errorLines(inUse.stderr).length, 1, inUse.stderr);
  assert.match(inUse.stderr, /EADDRINUSE/);
  await writeFile(join(dir, 'afile'), 'x');
  const notDir = await dfs(['master', '--listen', '127.0.0.1:0', '--data', join(dir, 'afile')]);
  assert.notEqual(notDir.code, 0);
  assert.equal(errorLines(notDir.stderr).length, 1, notDir.stderr);
  assert.match(notDir.stderr, /exists and is not a directory/);
  const proc = await dfs(['master', '--listen', '127.0.0.1:0', '--data', '/proc/dfs-no-such-dir']);
  assert.notEqual(proc.code, 0);
  assert.match(proc.stderr, /cannot create directory \/proc\/dfs-no-such-dir/);
});

test('dfs dev with one keeper takes writes at one replica, and stops on SIGINT with exit 0', async (t) => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { startDfs, runDfs } = await import('./helpers/cluster.js');
  const dir = await mkdtemp(join(tmpdir(), 'dfs-dev-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // dev takes PORT and PORT+1: try a few random high ports until a pair is free.
  let dev: Awaited<ReturnType<typeof startDfs>> | undefined;
  for (let attempt = 0; dev === undefined; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    dev = await startDfs(['dev', '--port', String(port), '--data', join(dir, 'data'), '--keepers', '1'], /master\s+(\S+)/)
      .catch((err: Error) => { if (attempt >= 4 || !/in use/.test(err.message)) throw err; return undefined; });
  }
  const child = dev.child;
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await writeFile(join(dir, 'hello.txt'), 'hello, one keeper\n');
  const put = await runDfs(['put', join(dir, 'hello.txt'), '/hello.txt'], dev.address);
  assert.equal(put.code, 0, put.stderr);
  const stat = await runDfs(['stat', '--json', '/hello.txt'], dev.address);
  assert.equal(JSON.parse(stat.stdout.toString()).replication, 1);
  const cat = await runDfs(['cat', '/hello.txt'], dev.address);
  assert.equal(cat.stdout.toString(), 'hello, one keeper\n');
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGINT');
  assert.equal(await exited, 0);
  assert.match(dev.log.join(''), /stopping/);
});

test('a keeper listening on every interface is reached at the address it advertises', async (t) => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const net = await import('node:net');
  const { startDfs, runDfs } = await import('./helpers/cluster.js');
  const dir = await mkdtemp(join(tmpdir(), 'dfs-advertise-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const master = await startDfs(['master', '--listen', '127.0.0.1:0', '--data', join(dir, 'm'), '--replication', '1', '--min-replicas', '1'], /master listening on (\S+),/);
  t.after(() => { master.child.kill('SIGKILL'); });
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  const keeper = await startDfs(['keeper', '--master', master.address, '--listen', `0.0.0.0:${port}`, '--advertise', `127.0.0.1:${port}`,
    '--data', join(dir, 'k')], /keeper [0-9a-f]+ serving (\S+) from/);
  t.after(() => { keeper.child.kill('SIGKILL'); });
  assert.equal(keeper.address, `127.0.0.1:${port}`);
  let status: { keepers: { address: string; alive: boolean }[] } = { keepers: [] };
  for (let i = 0; i < 100 && !status.keepers.some((k) => k.alive); i++) {
    status = JSON.parse((await runDfs(['status', '--json'], master.address)).stdout.toString());
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(status.keepers.map((k) => k.address), [`127.0.0.1:${port}`]);
  await writeFile(join(dir, 'f'), 'through the advertised address\n');
  assert.equal((await runDfs(['put', join(dir, 'f'), '/f'], master.address)).code, 0);
  assert.equal((await runDfs(['cat', '/f'], master.address)).stdout.toString(), 'through the advertised address\n');
});

test('dfs without a command prints its usage to stderr and exits 2; a command stopped by SIGINT exits 130', async (t) => {
  const bare = await dfs([]);
  assert.equal(bare.code, 2);
  assert.equal(bare.stdout, '');
  assert.match(bare.stderr, /^dfs [\d.]+: a distributed file system/);

  // A master that accepts and never answers: the command is still connecting when Ctrl-C comes.
  const net = await import('node:net');
  const { spawn } = await import('node:child_process');
  const silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.after(() => silent.close());
  const port = (silent.address() as { port: number }).port;
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'ls', '/', '--master', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  // Signalled once its connection is in: the server sees it.
  await new Promise<void>((r) => silent.once('connection', () => r()));
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /cancelled \(CANCEL\)/);

  const termed = spawn(process.execPath, ['--import', 'tsx', main, 'ls', '/', '--master', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((r) => silent.once('connection', () => r()));
  termed.kill('SIGTERM');
  assert.equal(await new Promise<number | null>((r) => termed.once('exit', (c) => r(c))), 143, 'SIGTERM: 128 + 15');
});
