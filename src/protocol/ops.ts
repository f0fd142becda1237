// The dfs operations carried on the wire engine (wire-spec.md §11): op codes, versions and
// the schemas of their request and response headers. Master ops are 0x01xx, keeper ops 0x02xx.
// Bodies are noted where an operation has one; lists that can grow without bound travel in bodies.

import { defineOperation } from '../transport/rpc.js';
import type { Schema } from '../wire/fields.js';

/** Node types in the namespace. */
export const NodeType = { FILE: 1, DIRECTORY: 2 } as const;

export const KEEPER_REF: Schema = {
  id: { tag: 1, type: 'string' },
  address: { tag: 2, type: 'string' },
};

export const CHUNK_INFO = {
  id: { tag: 1, type: 'string' },
  size: { tag: 2, type: 'u64' },
  sha256: { tag: 3, type: 'string' },
  /** Keepers holding a replica, with their addresses and whether they are alive now. */
  replicas: { tag: 4, type: { list: { record: { id: { tag: 1, type: 'string' }, address: { tag: 2, type: 'string' }, alive: { tag: 3, type: 'bool' } } } } },
} as const satisfies Schema;

export const ENTRY_INFO = {
  name: { tag: 1, type: 'string' },
  type: { tag: 2, type: 'u8' },
  size: { tag: 3, type: 'u64' },
  replication: { tag: 4, type: 'u8' },
  mtime: { tag: 5, type: 'u64' },
  chunks: { tag: 6, type: 'u32' },
  chunkSize: { tag: 7, type: 'u32' },
} as const satisfies Schema;

/** Body of LIST: the directory's entries. */
export const LIST_BODY = { entries: { tag: 1, type: { list: { record: ENTRY_INFO } } } } as const satisfies Schema;
/** Body of STAT for a file: its chunks in order. */
export const CHUNKS_BODY = { chunks: { tag: 1, type: { list: { record: CHUNK_INFO } } } } as const satisfies Schema;

export const KEEPER_STATUS = {
  id: { tag: 1, type: 'string' },
  address: { tag: 2, type: 'string' },
  zone: { tag: 3, type: 'string' },
  alive: { tag: 4, type: 'bool' },
  capacity: { tag: 5, type: 'u64' },
  used: { tag: 6, type: 'u64' },
  chunks: { tag: 7, type: 'u32' },
  load: { tag: 8, type: 'u32' },
  lastSeenMs: { tag: 9, type: 'u64' },
  /** KeeperMode: 1 normal, 2 maintenance, 3 draining. */
  mode: { tag: 10, type: 'u8', optional: true },
  /** End of a maintenance window, ms since the epoch; 0 otherwise. */
  modeUntil: { tag: 11, type: 'u64', optional: true },
  /** False when the keeper refuses new chunks (disk full, disk errors, draining). */
  acceptingWrites: { tag: 12, type: 'bool', optional: true },
  /** The keeper's last disk error, empty when none. */
  diskError: { tag: 13, type: 'string', optional: true },
  /** Draining and no committed chunk depends on it any more: safe to remove. */
  drained: { tag: 14, type: 'bool', optional: true },
} as const satisfies Schema;
export const STATUS_BODY = { keepers: { tag: 1, type: { list: { record: KEEPER_STATUS } } } } as const satisfies Schema;

/** Keeper modes an operator sets with KEEPER_ADMIN; FORGET is an action: remove a gone, empty keeper. */
export const KeeperMode = { NORMAL: 1, MAINTENANCE: 2, DRAINING: 3, FORGET: 4 } as const;

export type KeeperModeName = 'normal' | 'maintenance' | 'draining';
/** Wire values of the modes, and back: both ends translate through these. */
export const KEEPER_MODE_VALUES: Readonly<Record<KeeperModeName, number>> = {
  normal: KeeperMode.NORMAL, maintenance: KeeperMode.MAINTENANCE, draining: KeeperMode.DRAINING,
};
export const KEEPER_MODE_NAMES: Readonly<Record<number, KeeperModeName>> = {
  [KeeperMode.NORMAL]: 'normal', [KeeperMode.MAINTENANCE]: 'maintenance', [KeeperMode.DRAINING]: 'draining',
};

/** Work the master hands a keeper in a heartbeat reply. */
export const TaskKind = {
  /** Send this keeper's replica of the chunk to the target keeper with WRITE_CHUNK (no downstream). */
  COPY: 1,
  /** Delete this keeper's replica of the chunk. */
  DELETE: 2,
  /** Re-hash this keeper's replica now; a bad one is quarantined and reported as corrupt. */
  VERIFY: 3,
} as const;

export const TASK = {
  taskId: { tag: 1, type: 'u64' },
  kind: { tag: 2, type: 'u8' },
  chunkId: { tag: 3, type: 'string' },
  targetId: { tag: 4, type: 'string', optional: true },
  targetAddress: { tag: 5, type: 'string', optional: true },
} as const satisfies Schema;

export const TASK_RESULT = {
  taskId: { tag: 1, type: 'u64' },
  /** NO_ERROR, or the registry name of the failure. */
  status: { tag: 2, type: 'string' },
  message: { tag: 3, type: 'string', optional: true },
} as const satisfies Schema;

/** Body of a HEARTBEAT request: outcomes of finished tasks and chunks found corrupt since the last one. */
export const HEARTBEAT_BODY = {
  results: { tag: 1, type: { list: { record: TASK_RESULT } } },
  corrupt: { tag: 2, type: { list: 'string' } },
} as const satisfies Schema;
/** Body of a HEARTBEAT reply: new tasks for the keeper. */
export const TASKS_BODY = { tasks: { tag: 1, type: { list: { record: TASK } } } } as const satisfies Schema;
/** Body of CHUNK_REPORT: chunk ids the keeper holds, at most CHUNK_REPORT_PAGE per request. */
export const CHUNK_IDS_BODY = { ids: { tag: 1, type: { list: 'string' } } } as const satisfies Schema;
export const CHUNK_REPORT_PAGE = 65_536;

/** Per-file health from FSCK: 1 healthy, 2 under-replicated, 3 corrupt, 4 missing. */
export const FileHealth = { HEALTHY: 1, UNDER_REPLICATED: 2, CORRUPT: 3, MISSING: 4 } as const;

export type FileHealthName = 'healthy' | 'under-replicated' | 'corrupt' | 'missing';
export const FILE_HEALTH_VALUES: Readonly<Record<FileHealthName, number>> = {
  healthy: FileHealth.HEALTHY, 'under-replicated': FileHealth.UNDER_REPLICATED, corrupt: FileHealth.CORRUPT, missing: FileHealth.MISSING,
};
export const FILE_HEALTH_NAMES: Readonly<Record<number, FileHealthName>> = {
  [FileHealth.HEALTHY]: 'healthy', [FileHealth.UNDER_REPLICATED]: 'under-replicated', [FileHealth.CORRUPT]: 'corrupt', [FileHealth.MISSING]: 'missing',
};
export const FSCK_FILE = {
  path: { tag: 1, type: 'string' },
  health: { tag: 2, type: 'u8' },
  chunks: { tag: 3, type: 'u32' },
  underReplicated: { tag: 4, type: 'u32' },
  corrupt: { tag: 5, type: 'u32' },
  missing: { tag: 6, type: 'u32' },
} as const satisfies Schema;
export const FSCK_BODY = { files: { tag: 1, type: { list: { record: FSCK_FILE } } } } as const satisfies Schema;

// ---- Master operations ----

export const MKDIR = defineOperation({
  name: 'MKDIR', op: 0x0101, version: 1,
  request: { path: { tag: 1, type: 'string' }, parents: { tag: 2, type: 'bool' } },
  response: {},
});

/** Body: LIST_BODY. */
export const LIST = defineOperation({
  name: 'LIST', op: 0x0102, version: 1,
  request: { path: { tag: 1, type: 'string' } },
  response: { count: { tag: 1, type: 'u32' } },
});

/** Body for files: CHUNKS_BODY. */
export const STAT = defineOperation({
  name: 'STAT', op: 0x0103, version: 1,
  request: { path: { tag: 1, type: 'string' } },
  response: ENTRY_INFO,
});

export const REMOVE = defineOperation({
  name: 'REMOVE', op: 0x0104, version: 1,
  request: { path: { tag: 1, type: 'string' }, recursive: { tag: 2, type: 'bool' } },
  response: {},
});

export const RENAME = defineOperation({
  name: 'RENAME', op: 0x0105, version: 1,
  request: { src: { tag: 1, type: 'string' }, dst: { tag: 2, type: 'string' } },
  response: {},
});

export const BEGIN_UPLOAD = defineOperation({
  name: 'BEGIN_UPLOAD', op: 0x0106, version: 1,
  request: {
    path: { tag: 1, type: 'string' },
    replication: { tag: 2, type: 'u8' },
    chunkSize: { tag: 3, type: 'u32' },
    /** Size of the first chunk: allocate it in the same round trip, as ALLOCATE_CHUNK would. */
    firstChunk: { tag: 4, type: 'u32', optional: true },
  },
  response: {
    uploadId: { tag: 1, type: 'string' },
    minReplicas: { tag: 2, type: 'u8' },
    /** The first chunk's allocation, when asked for and possible; otherwise the writer asks ALLOCATE_CHUNK. */
    chunkId: { tag: 3, type: 'string', optional: true },
    keepers: { tag: 4, type: { list: { record: KEEPER_REF } }, optional: true },
  },
});

/** Picks keepers for the next chunk of an upload; `exclude` names keepers that failed this writer. */
export const ALLOCATE_CHUNK = defineOperation({
  name: 'ALLOCATE_CHUNK', op: 0x0107, version: 1,
  request: {
    uploadId: { tag: 1, type: 'string' },
    size: { tag: 2, type: 'u32' },
    exclude: { tag: 3, type: { list: 'string' }, optional: true },
  },
  response: { chunkId: { tag: 1, type: 'string' }, keepers: { tag: 2, type: { list: { record: KEEPER_REF } } } },
});

/** Body: CHUNKS_BODY with the replicas each chunk was acknowledged by. */
export const COMMIT = defineOperation({
  name: 'COMMIT', op: 0x0108, version: 1,
  request: { uploadId: { tag: 1, type: 'string' }, size: { tag: 2, type: 'u64' } },
  response: {},
});

export const ABORT_UPLOAD = defineOperation({
  name: 'ABORT_UPLOAD', op: 0x0109, version: 1,
  request: { uploadId: { tag: 1, type: 'string' } },
  response: {},
});

/** Body: STATUS_BODY. */
export const STATUS = defineOperation({
  name: 'STATUS', op: 0x010a, version: 1,
  request: {},
  response: {
    files: { tag: 1, type: 'u64' },
    chunks: { tag: 2, type: 'u64' },
    /** Committed chunks with fewer live replicas than their replication factor. */
    underReplicated: { tag: 3, type: 'u64', optional: true },
    /** Committed chunks with no live replica. */
    missing: { tag: 4, type: 'u64', optional: true },
    /** Copies in flight between keepers. */
    repairsInFlight: { tag: 5, type: 'u32', optional: true },
    /** Chunks copied back to full replication since the master started. */
    repaired: { tag: 6, type: 'u64', optional: true },
    /** Bytes per second copied by repairs over the last 10 s. */
    repairBytesPerS: { tag: 7, type: 'u64', optional: true },
    /** Chunks awaiting garbage collection. */
    garbage: { tag: 8, type: 'u64', optional: true },
  },
});

export const HEARTBEAT = defineOperation({
  name: 'HEARTBEAT', op: 0x010b, version: 1,
  request: {
    keeperId: { tag: 1, type: 'string' },
    address: { tag: 2, type: 'string' },
    zone: { tag: 3, type: 'string' },
    capacity: { tag: 4, type: 'u64' },
    used: { tag: 5, type: 'u64' },
    chunks: { tag: 6, type: 'u32' },
    load: { tag: 7, type: 'u32' },
    acceptingWrites: { tag: 8, type: 'bool' },
    /** The keeper's last disk error; absent or empty when none. */
    diskError: { tag: 9, type: 'string', optional: true },
  },
  response: {
    intervalMs: { tag: 1, type: 'u32' },
    /** The master wants a full CHUNK_REPORT (it has none from this keeper since it started). */
    reportChunks: { tag: 2, type: 'bool', optional: true },
  },
});

/** Body: CHUNK_IDS_BODY. The master reconciles once it has the page with `final` set. */
export const CHUNK_REPORT = defineOperation({
  name: 'CHUNK_REPORT', op: 0x010c, version: 1,
  request: { keeperId: { tag: 1, type: 'string' }, final: { tag: 2, type: 'bool' } },
  response: {},
});

/** A reader saw a replica that failed its checksum; the master asks that keeper to verify it. */
export const REPORT_CORRUPT = defineOperation({
  name: 'REPORT_CORRUPT', op: 0x010d, version: 1,
  request: { chunkId: { tag: 1, type: 'string' }, keeperId: { tag: 2, type: 'string' }, message: { tag: 3, type: 'string', optional: true } },
  response: {},
});

/** Sets a keeper's mode: normal, maintenance for `durationMs`, or draining; or forgets a gone, empty keeper (mode 4). */
export const KEEPER_ADMIN = defineOperation({
  name: 'KEEPER_ADMIN', op: 0x010e, version: 1,
  request: { keeperId: { tag: 1, type: 'string' }, mode: { tag: 2, type: 'u8' }, durationMs: { tag: 3, type: 'u64', optional: true } },
  response: {
    mode: { tag: 1, type: 'u8' }, until: { tag: 2, type: 'u64' }, drained: { tag: 3, type: 'bool' },
    /** The keeper's whole id, whatever prefix or address named it. */
    keeperId: { tag: 4, type: 'string', optional: true },
  },
});

/** Body: FSCK_BODY, every file under `path` (only unhealthy ones unless `all`). */
export const FSCK = defineOperation({
  name: 'FSCK', op: 0x010f, version: 1,
  request: { path: { tag: 1, type: 'string' }, all: { tag: 2, type: 'bool' } },
  response: {
    files: { tag: 1, type: 'u64' },
    healthy: { tag: 2, type: 'u64' },
    underReplicated: { tag: 3, type: 'u64' },
    corrupt: { tag: 4, type: 'u64' },
    missing: { tag: 5, type: 'u64' },
  },
});

/** Schedules moves from the fullest keepers to the emptiest, copying before deleting. */
export const BALANCE = defineOperation({
  name: 'BALANCE', op: 0x0110, version: 1,
  request: { thresholdPercent: { tag: 1, type: 'u8' } },
  response: { moves: { tag: 1, type: 'u32' } },
});

// ---- Keeper operations ----

/** One hop's outcome in a write pipeline, in pipeline order. */
export const HOP_ACK = {
  keeperId: { tag: 1, type: 'string' },
  address: { tag: 2, type: 'string' },
  /** An error registry name, NO_ERROR when the replica is durable. */
  status: { tag: 3, type: 'string' },
  message: { tag: 4, type: 'string', optional: true },
} as const satisfies Schema;

/**
 * Body: the chunk's bytes. The keeper stores them and forwards them to `downstream[0]` with the rest
 * of the list, streaming as they arrive; the reply lists one acknowledgement per hop.
 */
export const WRITE_CHUNK = defineOperation({
  name: 'WRITE_CHUNK', op: 0x0201, version: 1,
  request: {
    chunkId: { tag: 1, type: 'string' },
    size: { tag: 2, type: 'u32' },
    sha256: { tag: 3, type: 'string' },
    downstream: { tag: 4, type: { list: 'string' } },
  },
  response: { acks: { tag: 1, type: { list: { record: HOP_ACK } } } },
});

/** Reply body: the requested bytes of the chunk, verified against its SHA-256 before sending. */
export const READ_CHUNK = defineOperation({
  name: 'READ_CHUNK', op: 0x0202, version: 1,
  request: { chunkId: { tag: 1, type: 'string' } },
  response: { size: { tag: 1, type: 'u32' }, sha256: { tag: 2, type: 'string' } },
});
