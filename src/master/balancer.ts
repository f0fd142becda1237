// Evens out disk usage: moves replicas from keepers filled well above the cluster's mean to keepers
// well below it. A move is a copy followed by dropping the source's replica, so no chunk ever has
// fewer replicas than before; moves share the repair scheduler's per-keeper copy slots.

import type { MetadataState } from './namespace.js';
import type { KeeperState } from './placement.js';
import type { RepairScheduler } from './repair.js';

export interface BalanceInput {
  state: MetadataState;
  repair: RepairScheduler;
  /** Alive keepers in normal mode that accept writes. */
  keepers: readonly KeeperState[];
  /** Percentage points a keeper's fill may differ from the mean before it is balanced. */
  thresholdPercent: number;
  /** Most moves to schedule now. */
  maxMoves: number;
}

/** Schedules moves; returns how many. */
export function scheduleBalance(input: BalanceInput): number {
  const { state, repair, thresholdPercent, maxMoves } = input;
  const keepers = input.keepers.filter((k) => k.capacity > 0);
  if (keepers.length < 2) return 0;
  const fill = (k: KeeperState) => k.used / k.capacity;
  const mean = keepers.reduce((s, k) => s + k.used, 0) / keepers.reduce((s, k) => s + k.capacity, 0);
  const margin = thresholdPercent / 100;
  // Keepers well above the mean give to those below it; and a keeper well below it (a new, empty
  // one) takes from every keeper above the mean.
  let sources = keepers.filter((k) => fill(k) > mean + margin);
  const targets = keepers.filter((k) => fill(k) < mean).sort((a, b) => fill(a) - fill(b));
  if (sources.length === 0 && targets.some((k) => fill(k) < mean - margin)) sources = keepers.filter((k) => fill(k) > mean);
  sources.sort((a, b) => fill(b) - fill(a));
  if (sources.length === 0 || targets.length === 0) return 0;
  const zoneOf = new Map(keepers.map((k) => [k.id, k.zone]));
  // Bytes each target may still take before it reaches the mean.
  const room = new Map(targets.map((k) => [k.id, mean * k.capacity - k.used]));
  let moves = 0;
  for (const source of sources) {
    let excess = source.used - mean * source.capacity;
    for (const chunkId of state.chunksOnKeeper(source.id)) {
      if (moves >= maxMoves || excess <= 0) break;
      if (repair.copiesOn(source.id) >= repair.copySlots) break;
      const owner = state.chunkPlacement(chunkId);
      if (owner === undefined) continue;
      const others = owner.chunk.replicas.filter((r) => r !== source.id);
      // Never trade zone spread for balance: the target must not share a zone with the other replicas
      // unless the source shared it too.
      const zonesTaken = new Set(others.map((r) => zoneOf.get(r)));
      const target = targets.find((t) => !owner.chunk.replicas.includes(t.id) && (room.get(t.id) ?? 0) >= owner.chunk.size &&
        repair.copiesOn(t.id) < repair.copySlots && (!zonesTaken.has(t.zone) || zonesTaken.has(source.zone)));
      if (target === undefined) continue;
      if (!repair.requestMove(chunkId, source.id, target.id)) continue;
      room.set(target.id, (room.get(target.id) ?? 0) - owner.chunk.size);
      excess -= owner.chunk.size;
      moves++;
    }
  }
  return moves;
}
