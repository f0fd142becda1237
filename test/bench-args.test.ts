// The benchmarks refuse bad arguments in one line with exit code 2, before starting anything.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

function bench(file: string, args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const path = fileURLToPath(new URL(`../bench/${file}`, import.meta.url));
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

for (const [file, args, mention] of [
  ['wire.ts', ['--preroll', 'abc'], '--preroll abc'],
  ['wire.ts', ['--rounds', '0'], '--rounds 0'],
  ['wire.ts', ['--bogus'], "'--bogus'"],
  ['dfs.ts', ['--only', 'nothing'], '--only'],
] as const) {
  test(`bench/${file} ${args.join(' ')} is refused with one line and exit code 2`, async () => {
    const { code, stderr, stdout } = await bench(file, [...args]);
    assert.equal(code, 2, stderr);
    assert.equal(stdout, '');
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
    assert.ok(lines[0]!.includes(mention), lines[0]);
    assert.ok(!/\n\s+at /.test(stderr), 'no stack trace');
  });
}
