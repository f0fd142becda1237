// Replica placement decides whether a keeper or a zone failure loses data and whether writes pile
// onto one disk. These tests pin its promises: distinct keepers, zones first, only keepers that are
// alive with room, a preference for free space and low load, and a deterministic answer per seed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DfsError } from '../src/wire/errors.js';
import {
  DEFAULT_MIN_REPLICAS,
  placeReplicas,
  requireMinReplicas,
  seededRandom,
  type KeeperState,
} from '../src/master/placement.js';

const MiB = 1024 * 1024;

function keeper(id: string, zone: string, over: Partial<KeeperState> = {}): KeeperState {
  return { id, zone, capacity: 1000 * MiB, used: 0, load: 0, alive: true, acceptingWrites: true, ...over };
}

function zoneOf(keepers: readonly KeeperState[], id: string): string {
  return keepers.find((k) => k.id === id)!.zone;
}

function assertCode(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DfsError, `expected a DfsError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

test('replicas land on distinct keepers, never twice on one', () => {
  // Two replicas on one keeper are one failure away from zero.
  const keepers = [keeper('k1', 'a'), keeper('k2', 'a'), keeper('k3', 'a'), keeper('k4', 'a')];
  for (let seed = 0; seed < 50; seed++) {
    const placed = placeReplicas({ keepers, replication: 3, chunkSize: MiB, random: seededRandom(seed) });
    assert.equal(placed.length, 3);
    assert.equal(new Set(placed).size, 3);
  }
});

test('a keeper listed twice still yields one replica', () => {
  const keepers = [keeper('k1', 'a'), keeper('k1', 'a'), keeper('k2', 'b')];
  const placed = placeReplicas({ keepers, replication: 3, chunkSize: MiB, random: seededRandom(1) });
  assert.deepEqual([...placed].sort(), ['k1', 'k2']);
});

test('replicas spread over distinct zones before any zone gets a second copy', () => {
  // A whole zone (rack, room, power feed) can fail at once; one copy per zone survives that.
  const keepers = [
    keeper('a1', 'a'), keeper('a2', 'a', { used: 0 }), keeper('a3', 'a'),
    keeper('b1', 'b', { used: 900 * MiB }), keeper('c1', 'c', { used: 900 * MiB }),
  ];
  for (let seed = 0; seed < 50; seed++) {
    const placed = placeReplicas({ keepers, replication: 3, chunkSize: MiB, random: seededRandom(seed) });
    assert.deepEqual(placed.map((id) => zoneOf(keepers, id)).sort(), ['a', 'b', 'c'], `seed ${seed}`);
  }
});

test('with fewer zones than replicas, every zone is covered and the rest is filled', () => {
  const keepers = [keeper('a1', 'a'), keeper('a2', 'a'), keeper('a3', 'a'), keeper('b1', 'b')];
  for (let seed = 0; seed < 20; seed++) {
    const placed = placeReplicas({ keepers, replication: 3, chunkSize: MiB, random: seededRandom(seed) });
    assert.equal(new Set(placed).size, 3);
    assert.ok(placed.includes('b1'), 'the only keeper of zone b is used');
  }
});

test('re-replication puts the new copy in a zone the existing replicas do not cover', () => {
  const keepers = [keeper('a1', 'a'), keeper('a2', 'a'), keeper('b1', 'b'), keeper('c1', 'c', { used: 990 * MiB })];
  for (let seed = 0; seed < 20; seed++) {
    const placed = placeReplicas({
      keepers, replication: 1, chunkSize: MiB, random: seededRandom(seed), existing: ['a1', 'b1'],
    });
    assert.deepEqual(placed, ['c1'], 'zone c is preferred over a second copy in zone a, even with less room');
  }
});

test('dead keepers, keepers refusing writes, full keepers and excluded keepers are never chosen', () => {
  const keepers = [
    keeper('dead', 'a', { alive: false }),
    keeper('draining', 'b', { acceptingWrites: false }),
    keeper('full', 'c', { used: 1000 * MiB - MiB + 1 }),
    keeper('failed', 'd'),
    keeper('ok1', 'e'),
    keeper('ok2', 'e', { used: 1000 * MiB - MiB }), // exactly one chunk of room left: still fits
  ];
  for (let seed = 0; seed < 20; seed++) {
    const placed = placeReplicas({ keepers, replication: 3, chunkSize: MiB, random: seededRandom(seed), exclude: ['failed'] });
    assert.deepEqual([...placed].sort(), ['ok1', 'ok2']);
  }
});

test('fewer qualifying keepers than asked: placement returns what it can and the minimum check decides', () => {
  const keepers = [keeper('k1', 'a'), keeper('k2', 'b', { alive: false })];
  const placed = placeReplicas({ keepers, replication: 3, chunkSize: MiB, random: seededRandom(3) });
  assert.deepEqual(placed, ['k1']);
  assert.equal(DEFAULT_MIN_REPLICAS, 2);
  assertCode(() => requireMinReplicas(placed, 3), 'NOT_ENOUGH_KEEPERS', /only 1 keeper can take the chunk, fewer than the minimum of 2/);
  requireMinReplicas(placed, 1); // a file asking for one replica is satisfied by one
  requireMinReplicas(placed, 3, 1);
  requireMinReplicas(['k1', 'k2'], 3);
});

test('no qualifying keeper is NO_SPACE when live keepers are full, else NOT_ENOUGH_KEEPERS, counting alive keepers and keepers with room', () => {
  const keepers = [
    keeper('k1', 'a', { alive: false }),
    keeper('k2', 'a', { used: 1000 * MiB }),
    keeper('k3', 'b', { used: 999 * MiB + 1 }),
  ];
  assertCode(
    () => placeReplicas({ keepers, replication: 2, chunkSize: MiB, random: seededRandom(1) }),
    'NO_SPACE',
    /of 3 keepers 2 are alive, 2 accept writes and 0 have 1048576 bytes free/,
  );
  assertCode(
    () => placeReplicas({ keepers: [keeper('k1', 'a')], replication: 2, chunkSize: MiB, random: seededRandom(1), exclude: ['k1'] }),
    'NOT_ENOUGH_KEEPERS',
    /all 1 of those are excluded/,
  );
  assertCode(() => placeReplicas({ keepers: [], replication: 1, chunkSize: 1, random: seededRandom(1) }), 'NOT_ENOUGH_KEEPERS');
  assertCode(() => placeReplicas({ keepers: [keeper('k1', 'a', { alive: false })], replication: 1, chunkSize: 1, random: seededRandom(1) }), 'NOT_ENOUGH_KEEPERS');
});

test('nonsense requests are INVALID_ARGUMENT', () => {
  const keepers = [keeper('k1', 'a')];
  assertCode(() => placeReplicas({ keepers, replication: 0, chunkSize: 1, random: seededRandom(1) }), 'INVALID_ARGUMENT');
  assertCode(() => placeReplicas({ keepers, replication: 1.5, chunkSize: 1, random: seededRandom(1) }), 'INVALID_ARGUMENT');
  assertCode(() => placeReplicas({ keepers, replication: 1, chunkSize: -1, random: seededRandom(1) }), 'INVALID_ARGUMENT');
});

test('a keeper with far more free space is preferred', () => {
  // New, empty keepers should absorb writes so the cluster evens out.
  const keepers = [keeper('empty', 'a'), keeper('half', 'a', { used: 500 * MiB }), keeper('nearly-full', 'a', { used: 950 * MiB })];
  for (let seed = 0; seed < 50; seed++) {
    assert.deepEqual(placeReplicas({ keepers, replication: 1, chunkSize: MiB, random: seededRandom(seed) }), ['empty']);
    assert.deepEqual(placeReplicas({ keepers, replication: 2, chunkSize: MiB, random: seededRandom(seed) }), ['empty', 'half']);
  }
});

test('a keeper with far less load is preferred when space is equal', () => {
  const keepers = [keeper('busy', 'a', { load: 40 }), keeper('idle', 'a', { load: 0 }), keeper('some', 'a', { load: 20 })];
  for (let seed = 0; seed < 50; seed++) {
    assert.deepEqual(placeReplicas({ keepers, replication: 3, chunkSize: MiB, random: seededRandom(seed) }), ['idle', 'some', 'busy']);
  }
});

test('writes spread evenly over equal keepers instead of piling on the first', () => {
  // Without the random tie-break, every chunk would go to the same keeper until heartbeats caught up.
  const keepers = ['k1', 'k2', 'k3', 'k4'].map((id) => keeper(id, 'a'));
  const random = seededRandom(42);
  const counts = new Map<string, number>();
  const rounds = 4000;
  for (let i = 0; i < rounds; i++) {
    const [id] = placeReplicas({ keepers, replication: 1, chunkSize: MiB, random });
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  for (const k of keepers) {
    const share = (counts.get(k.id) ?? 0) / rounds;
    assert.ok(share > 0.2 && share < 0.3, `${k.id} got ${(share * 100).toFixed(1)}% of the chunks`);
  }
});

test('the same seed gives the same placements', () => {
  const keepers = Array.from({ length: 12 }, (_, i) =>
    keeper(`k${i}`, `z${i % 4}`, { used: (i % 3) * 10 * MiB, load: i % 2 }));
  const run = (seed: number) => {
    const random = seededRandom(seed);
    return Array.from({ length: 100 }, () => placeReplicas({ keepers, replication: 3, chunkSize: MiB, random }));
  };
  assert.deepEqual(run(7), run(7));
  assert.notDeepEqual(run(7), run(8));
});

test('seededRandom yields numbers in [0, 1)', () => {
  const random = seededRandom(123);
  for (let i = 0; i < 10_000; i++) {
    const x = random();
    assert.ok(x >= 0 && x < 1);
  }
});
