// Keeper liveness on the master: silence for the dead-after time, or a closed heartbeat connection
// not followed by a new report within a short grace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeeperRegistry } from '../src/master/keeper-registry.js';

const report = (id: string) => ({
  id, address: `${id}:1`, zone: 'z', capacity: 100, used: 0, chunks: 0, load: 0, acceptingWrites: true, diskError: '',
});

test('a keeper is alive until it has been silent for the dead-after time', () => {
  let now = 1000;
  const r = new KeeperRegistry(3000, () => now);
  assert.equal(r.isAlive('k1'), false, 'never heard of');
  r.report(report('k1'));
  now += 2999;
  assert.equal(r.isAlive('k1'), true);
  now += 1;
  assert.equal(r.isAlive('k1'), false);
  r.report(report('k1'));
  assert.equal(r.isAlive('k1'), true, 'a report brings it back');
});

test('a lost heartbeat connection makes a keeper dead after the grace unless it reports again', () => {
  let now = 1000;
  const r = new KeeperRegistry(3000, () => now);
  r.report(report('k1'));
  r.report(report('k2'));
  r.connectionLost('k1', 1000);
  r.connectionLost('k2', 1000);
  now += 500;
  r.report(report('k2')); // reconnected and reported: the full dead-after applies again
  now += 600;
  assert.equal(r.isAlive('k1'), false, 'crashed: dead 1 s after its connection closed');
  assert.equal(r.isAlive('k2'), true);
  now += 2000;
  assert.equal(r.isAlive('k2'), true);
  r.connectionLost('k3', 1000); // unknown keepers are ignored
  assert.equal(r.isAlive('k3'), false);
});
