// The master's file table keeps file names as bytes in a pool and finds them through its own hash
// index, in place of a Map per directory. These tests replay random creates, renames, replaces and
// removes against a plain Map model, long enough for dropped names to make the pool compact
// itself, because a stale index entry or a name moved wrongly would lose or misname a file.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Children, FileTable, type HasChildren } from '../src/master/file-table.js';
import { seededRandom } from '../src/master/placement.js';

class Dir implements HasChildren<Dir> {
  readonly children: Children<Dir>;
  constructor(table: FileTable<Dir>) {
    this.children = new Children(table, this);
  }
}

function check(table: FileTable<Dir>, dirs: Dir[], model: Map<string, number>[], seed: number): void {
  for (let d = 0; d < dirs.length; d++) {
    const kids = dirs[d].children;
    assert.equal(kids.size, model[d].size, `seed ${seed}: size of dir ${d}`);
    assert.deepEqual([...kids], [...model[d]], `seed ${seed}: entries of dir ${d} in insertion order`);
    for (const [name, slot] of model[d]) {
      assert.equal(kids.get(name), slot, `seed ${seed}: ${name} in dir ${d}`);
      assert.equal(table.name(slot), name);
      assert.equal(table.parent(slot), dirs[d]);
    }
  }
}

test('file names survive random creates, renames, replaces and removes, through pool compactions', () => {
  const seed = Number(process.env.SEED ?? 20261122);
  const random = seededRandom(seed);
  const table = new FileTable<Dir>();
  const dirs = [new Dir(table), new Dir(table), new Dir(table)];
  const model = dirs.map(() => new Map<string, number>());
  // Long names (up to 255 bytes, some not ASCII) make megabytes of dead pool bytes quickly.
  const nameOf = (i: number) => `${'é'.repeat(i % 7)}${String(i % 5000).padStart(6, '0')}-${'x'.repeat(200 + (i % 30))}`;
  const pick = (d: number) => {
    const keys = [...model[d].keys()];
    return keys[Math.floor(random() * keys.length)];
  };
  for (let op = 0; op < 100_000; op++) {
    const d = Math.floor(random() * dirs.length);
    const kids = dirs[d].children;
    const r = random();
    if (r < 0.5 || model[d].size === 0) {
      // Create, or replace a file of the same name as a commit does: drop the old, add the new.
      const name = nameOf(Math.floor(random() * 20_000));
      const old = kids.get(name);
      if (typeof old === 'number') {
        table.remove(old);
        model[d].delete(name);
      }
      const slot = table.add(name, kids.key, op, op * 3, 3, 1024, 'ab'.repeat(16));
      kids.set(name, slot);
      model[d].set(name, slot);
    } else if (r < 0.75) {
      const name = pick(d);
      const slot = model[d].get(name)!;
      assert.equal(kids.delete(name), true);
      table.remove(slot);
      model[d].delete(name);
    } else {
      // A rename into any directory, over a file already there or not.
      const name = pick(d);
      const slot = model[d].get(name)!;
      const to = Math.floor(random() * dirs.length);
      const newName = nameOf(Math.floor(random() * 20_000));
      kids.delete(name);
      model[d].delete(name);
      const target = dirs[to].children.get(newName);
      if (typeof target === 'number') {
        table.remove(target);
        model[to].delete(newName);
      }
      table.move(slot, newName, dirs[to].children.key);
      dirs[to].children.set(newName, slot);
      model[to].set(newName, slot);
    }
    if (op % 25_000 === 0) check(table, dirs, model, seed);
  }
  check(table, dirs, model, seed);
  for (let d = 0; d < dirs.length; d++) {
    assert.equal(dirs[d].children.get('missing'), undefined);
    assert.equal(dirs[d].children.get('n'.repeat(300)), undefined, 'a name longer than any stored one is simply absent');
  }
});
