// Which replicas of a chunk count, judged from keeper liveness, operator modes and corruption reports.
// Pure: the repair scheduler and fsck share these rules, so they never disagree about a chunk.

import type { KeeperState } from './placement.js';
import type { KeeperModeInfo } from './state-types.js';


/**
 * A keeper's mode as it stands at `now`: a maintenance window that has run out is normal again,
 * whatever the journal still says (an operator need not remember to end it).
 */
export function modeAt(recorded: KeeperModeInfo, now: number): KeeperModeInfo {
  return recorded.mode === 'maintenance' && recorded.until <= now ? { id: recorded.id, mode: 'normal', until: 0 } : recorded;
}

/** Keepers as placement sees them: one in maintenance or draining takes no new chunks, whatever its disk says. */
export function withModes(keepers: readonly KeeperState[], mode: (id: string) => KeeperModeInfo, now: number): KeeperState[] {
  return keepers.map((k) => (modeAt(mode(k.id), now).mode === 'normal' ? k : { ...k, acceptingWrites: false }));
}

export interface ReplicaJudge {
  isAlive(keeperId: string): boolean;
  mode(keeperId: string): KeeperModeInfo;
  /** Keepers that reported this chunk corrupt since the master started. */
  corruptOn(chunkId: string): ReadonlySet<string> | undefined;
  now(): number;
}

/** In a maintenance window: down or not, its replicas are expected back. */
export function inMaintenance(judge: ReplicaJudge, keeperId: string): boolean {
  const m = judge.mode(keeperId);
  return m.mode === 'maintenance' && m.until > judge.now();
}

/** Replicas that can be read now or soon: on a live keeper, or one in a maintenance window. */
export function readableReplicas(judge: ReplicaJudge, chunkId: string, replicas: readonly string[]): string[] {
  const corrupt = judge.corruptOn(chunkId);
  return replicas.filter((k) => !corrupt?.has(k) && (judge.isAlive(k) || inMaintenance(judge, k)));
}

/**
 * Replicas that count towards the replication factor: readable, and not on a draining keeper
 * (a draining keeper's copies are sources for repair, but are about to go).
 */
export function countingReplicas(judge: ReplicaJudge, chunkId: string, replicas: readonly string[]): string[] {
  return readableReplicas(judge, chunkId, replicas).filter((k) => judge.mode(k).mode !== 'draining');
}

export type ChunkHealth = 'healthy' | 'under-replicated' | 'corrupt' | 'missing';

/** fsck's verdict for one chunk. */
export function chunkHealth(judge: ReplicaJudge, chunkId: string, replicas: readonly string[], replication: number): ChunkHealth {
  const readable = readableReplicas(judge, chunkId, replicas).length;
  if (readable === 0) return (judge.corruptOn(chunkId)?.size ?? 0) > 0 ? 'corrupt' : 'missing';
  return countingReplicas(judge, chunkId, replicas).length < replication ? 'under-replicated' : 'healthy';
}

const RANK: Record<ChunkHealth, number> = { healthy: 0, 'under-replicated': 1, corrupt: 2, missing: 3 };

/** The worse of two verdicts: a file is as healthy as its sickest chunk. */
export function worse(a: ChunkHealth, b: ChunkHealth): ChunkHealth {
  return RANK[a] >= RANK[b] ? a : b;
}
