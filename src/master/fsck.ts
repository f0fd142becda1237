// fsck: the health of every file under a path, chunk by chunk, by the same rules repair uses.

import { DfsError } from '../wire/errors.js';
import type { MetadataState } from './namespace.js';
import { chunkHealth, worse, type ChunkHealth, type ReplicaJudge } from './replica-health.js';

export interface FileReport {
  path: string;
  health: ChunkHealth;
  chunks: number;
  underReplicated: number;
  corrupt: number;
  missing: number;
}

export interface FsckSummary {
  files: number;
  healthy: number;
  underReplicated: number;
  corrupt: number;
  missing: number;
}

/** Walks `path` (a file or a directory tree); calls `onFile` for every file, returns the totals. */
export function fsck(state: MetadataState, judge: ReplicaJudge, path: string, onFile: (r: FileReport) => void): FsckSummary {
  const top = state.lookup(path);
  if (top === undefined) throw new DfsError('NOT_FOUND', `fsck ${path}: no such file or directory`);
  const sum: FsckSummary = { files: 0, healthy: 0, underReplicated: 0, corrupt: 0, missing: 0 };
  const stack = [path];
  while (stack.length > 0) {
    const at = stack.pop()!;
    const st = state.stat(at);
    if (st.type === 'dir') {
      for (const e of state.list(at).reverse()) stack.push(at === '/' ? `/${e.name}` : `${at}/${e.name}`);
      continue;
    }
    const report: FileReport = { path: at, health: 'healthy', chunks: st.chunks.length, underReplicated: 0, corrupt: 0, missing: 0 };
    for (const c of st.chunks) {
      const h = chunkHealth(judge, c.id, c.replicas, st.replication);
      if (h === 'under-replicated') report.underReplicated++;
      else if (h === 'corrupt') report.corrupt++;
      else if (h === 'missing') report.missing++;
      report.health = worse(report.health, h);
    }
    sum.files++;
    if (report.health === 'healthy') sum.healthy++;
    else if (report.health === 'under-replicated') sum.underReplicated++;
    else if (report.health === 'corrupt') sum.corrupt++;
    else sum.missing++;
    onFile(report);
  }
  return sum;
}
