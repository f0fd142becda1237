// A master that only does what a keeper needs of it: answers HEARTBEAT (handing out the tasks a test
// queued, asking for chunk reports when told to) and CHUNK_REPORT, and records everything a keeper
// sent, so that tests can check the keeper's side of wire-spec.md §11.1 byte for byte.

import { DfsError } from '../../src/wire/errors.js';
import { decodeRecord, encodeRecord, type Decoded } from '../../src/wire/fields.js';
import { listen, readAll, RpcServer, type Address, type WireServer } from '../../src/transport/index.js';
import { CHUNK_IDS_BODY, CHUNK_REPORT, HEARTBEAT, HEARTBEAT_BODY, TASKS_BODY, TASK } from '../../src/protocol/ops.js';

export type Heartbeat = Decoded<typeof HEARTBEAT.request>;
export type HeartbeatBody = Decoded<typeof HEARTBEAT_BODY>;
export type Task = Decoded<typeof TASK>;

export interface ReportPage {
  keeperId: string;
  final: boolean;
  ids: string[];
  at: number;
}

export interface FakeMaster {
  address: Address;
  server: WireServer;
  beats: { at: number; request: Heartbeat; body: HeartbeatBody | null }[];
  pages: ReportPage[];
  /** Tasks for the next heartbeat of the keeper with this id ('' for any keeper). */
  queue(keeperId: string, ...tasks: Task[]): void;
  /** Set reportChunks in the next reply to this keeper. */
  askReport(keeperId: string): void;
  /** CHUNK_REPORT requests to refuse (UNAVAILABLE) before accepting again. */
  refuseReports: number;
  /** Every result received, in order. */
  results(): Decoded<typeof HEARTBEAT_BODY>['results'];
  /** Every corrupt id received, in order (duplicates kept). */
  corrupt(): string[];
  /** Completed reports: the ids of each run of pages ending with a final one. */
  reports(keeperId: string): string[][];
}

export async function startFakeMaster(port = 0): Promise<FakeMaster> {
  const pending = new Map<string, Task[]>();
  const wantReport = new Set<string>();
  const master: FakeMaster = {
    address: { host: '127.0.0.1', port: 0 },
    server: null as unknown as WireServer,
    beats: [],
    pages: [],
    refuseReports: 0,
    queue(keeperId, ...tasks) {
      pending.set(keeperId, [...(pending.get(keeperId) ?? []), ...tasks]);
    },
    askReport(keeperId) {
      wantReport.add(keeperId);
    },
    results: () => master.beats.flatMap((b) => b.body?.results ?? []),
    corrupt: () => master.beats.flatMap((b) => b.body?.corrupt ?? []),
    reports(keeperId) {
      const out: string[][] = [];
      let current: string[] = [];
      for (const p of master.pages.filter((q) => q.keeperId === keeperId)) {
        current.push(...p.ids);
        if (p.final) {
          out.push(current);
          current = [];
        }
      }
      return out;
    },
  };
  const rpc = new RpcServer()
    .register(HEARTBEAT, async ({ request, body }) => {
      const raw = await readAll(body, 16 * 1024 * 1024);
      master.beats.push({ at: Date.now(), request, body: raw.length > 0 ? decodeRecord(HEARTBEAT_BODY, raw) : null });
      const tasks = [...(pending.get(request.keeperId) ?? []), ...(pending.get('') ?? [])];
      pending.delete(request.keeperId);
      pending.delete('');
      const reportChunks = wantReport.delete(request.keeperId);
      return {
        response: { intervalMs: 0, ...(reportChunks ? { reportChunks: true } : {}) },
        ...(tasks.length > 0 ? { body: encodeRecord(TASKS_BODY, { tasks }) } : {}),
      };
    })
    .register(CHUNK_REPORT, async ({ request, body }) => {
      const raw = await readAll(body, 16 * 1024 * 1024);
      if (master.refuseReports > 0) {
        master.refuseReports--;
        throw new DfsError('UNAVAILABLE', 'not now');
      }
      master.pages.push({ keeperId: request.keeperId, final: request.final, ids: decodeRecord(CHUNK_IDS_BODY, raw).ids, at: Date.now() });
      return { response: {} };
    });
  master.server = await listen({ host: '127.0.0.1', port }, (conn) => rpc.serve(conn));
  master.address = master.server.address;
  return master;
}
