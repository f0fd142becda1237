// Where a chunk's replicas go: distinct keepers, spread over zones first, on keepers with room and
// little load. Pure: the caller passes the keepers' soft state and a random source, so a seeded
// source gives the same answer every time.
import { DfsError } from '../wire/errors.js';

/** Registered facts and the latest heartbeat of one keeper. */
export interface KeeperState {
  readonly id: string;
  readonly zone: string;
  /** Bytes the keeper may fill. */
  readonly capacity: number;
  /** Bytes it holds. */
  readonly used: number;
  /** Work in flight (streams, queued writes): any non-negative measure, compared between keepers. */
  readonly load: number;
  /** Heartbeats arrive in time. */
  readonly alive: boolean;
  /** False while the keeper drains, is read-only or is being decommissioned. */
  readonly acceptingWrites: boolean;
}

export interface PlacementRequest {
  readonly keepers: readonly KeeperState[];
  /** Replicas wanted. */
  readonly replication: number;
  /** Free bytes a keeper needs to take the chunk. */
  readonly chunkSize: number;
  /** Returns numbers in [0, 1); shuffles keepers whose scores are close, so writes spread over them. */
  readonly random: () => number;
  /** Keepers never to choose, e.g. one that just failed in a pipeline. */
  readonly exclude?: Iterable<string>;
  /**
   * Keepers that already hold the chunk (re-replication): never chosen, and their zones count as
   * covered, so new copies go to other zones first.
   */
  readonly existing?: Iterable<string>;
}

/** Fewest replicas a write should accept when the cluster cannot give all that a file asks for. */
export const DEFAULT_MIN_REPLICAS = 2;

/**
 * How far apart, in score, two keepers may be and still be picked in random order. Scores run from
 * -1 to 1; 0.1 lets keepers within roughly 10% of the most free space share the writes.
 */
export const SCORE_JITTER = 0.1;

/**
 * Chooses up to `replication` distinct keepers for a new chunk. Returns fewer when fewer qualify;
 * the caller weighs that against its minimum (see `requireMinReplicas`). Throws NO_SPACE when keepers
 * are alive but none has room, NOT_ENOUGH_KEEPERS when none qualifies otherwise, saying how many are
 * alive and how many have room.
 */
export function placeReplicas(req: PlacementRequest): string[] {
  const { keepers, replication, chunkSize, random } = req;
  if (!Number.isSafeInteger(replication) || replication < 1) {
    throw new DfsError('INVALID_ARGUMENT', `place replicas: replication must be a positive integer, got ${replication}`);
  }
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 0) {
    throw new DfsError('INVALID_ARGUMENT', `place replicas: chunk size must be a non-negative integer, got ${chunkSize}`);
  }
  const excluded = new Set(req.exclude ?? []);
  const existing = new Set(req.existing ?? []);
  const zonesTaken = new Set<string>();
  let holders = 0;
  let alive = 0;
  let accepting = 0;
  let withRoom = 0;
  const candidates: KeeperState[] = [];
  const seen = new Set<string>();
  for (const k of keepers) {
    if (seen.has(k.id)) continue; // a duplicate row must not turn into two replicas on one keeper
    seen.add(k.id);
    if (existing.has(k.id)) {
      holders++;
      zonesTaken.add(k.zone);
      continue;
    }
    if (!k.alive) continue;
    alive++;
    if (!k.acceptingWrites) continue;
    accepting++;
    if (k.capacity - k.used < chunkSize) continue;
    withRoom++;
    if (excluded.has(k.id)) continue;
    candidates.push(k);
  }
  if (candidates.length === 0) {
    const excludedNote = withRoom > 0 ? `, and all ${withRoom} of those are excluded` : '';
    // Keepers are up but none has room (or all refuse writes, as full keepers do): the cluster is full.
    throw new DfsError(
      alive > 0 && withRoom === 0 ? 'NO_SPACE' : 'NOT_ENOUGH_KEEPERS',
      `no keeper can take a ${chunkSize}-byte chunk: of ${seen.size - holders} keepers ${alive} are alive, ` +
        `${accepting} accept writes and ${withRoom} have ${chunkSize} bytes free${excludedNote}; ` +
        'start keepers or free space, then retry',
    );
  }

  // Score: share of the most free space anyone has, minus share of the highest load. Absolute free
  // space (not a fraction) so a big keeper takes proportionally more; jitter spreads near-equals.
  let maxFree = 0;
  let maxLoad = 0;
  for (const k of candidates) {
    maxFree = Math.max(maxFree, k.capacity - k.used);
    maxLoad = Math.max(maxLoad, k.load);
  }
  const scored = candidates.map((k) => ({
    k,
    score:
      (maxFree > 0 ? (k.capacity - k.used) / maxFree : 1) -
      (maxLoad > 0 ? k.load / maxLoad : 0) +
      random() * SCORE_JITTER,
  }));
  scored.sort((a, b) => b.score - a.score || (a.k.id < b.k.id ? -1 : a.k.id > b.k.id ? 1 : 0));

  const chosen: string[] = [];
  const picked = new Set<string>();
  // First pass: the best keeper of every zone not yet covered; second pass: fill by score.
  for (const { k } of scored) {
    if (chosen.length === replication) break;
    if (zonesTaken.has(k.zone)) continue;
    zonesTaken.add(k.zone);
    chosen.push(k.id);
    picked.add(k.id);
  }
  for (const { k } of scored) {
    if (chosen.length === replication) break;
    if (picked.has(k.id)) continue;
    chosen.push(k.id);
    picked.add(k.id);
  }
  return chosen;
}

/**
 * Throws NOT_ENOUGH_KEEPERS when `placed` falls short of the minimum a write accepts. The minimum
 * never exceeds the file's replication, so a file that asks for one replica can be written with one.
 */
export function requireMinReplicas(placed: readonly string[], replication: number, min = DEFAULT_MIN_REPLICAS): void {
  const need = Math.min(min, replication);
  if (placed.length < need) {
    throw new DfsError(
      'NOT_ENOUGH_KEEPERS',
      `only ${placed.length} keeper${placed.length === 1 ? '' : 's'} can take the chunk, ` +
        `fewer than the minimum of ${need} (replication ${replication}); start more keepers or lower the replication`,
    );
  }
}

/** A small seeded PRNG (mulberry32) for placement and tests: the same seed gives the same sequence. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
