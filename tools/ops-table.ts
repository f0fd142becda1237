// Renders the dfs operations of src/protocol/ops.ts as the markdown of wire-spec.md §11.1,
// so the spec and the code cannot drift: a test checks that the spec contains this text verbatim.
// Run `node --import tsx tools/ops-table.ts` to print it.

import * as ops from '../src/protocol/ops.js';
import type { FieldType, Schema } from '../src/wire/fields.js';
import type { Operation } from '../src/transport/rpc.js';

function typeName(t: FieldType): string {
  if (typeof t === 'string') return t;
  if ('list' in t) return `list of ${typeName(t.list)}`;
  return `record { ${fieldsInline(t.record)} }`;
}

function fieldsInline(schema: Schema): string {
  const parts = Object.entries(schema).map(([name, f]) => `${f.tag}: ${name} ${typeName(f.type)}${f.optional ? '?' : ''}`);
  return parts.length === 0 ? '(none)' : parts.join('; ');
}

function isOperation(v: unknown): v is Operation {
  return typeof v === 'object' && v !== null && 'op' in v && 'request' in v && 'response' in v;
}

const BODIES: Record<string, [string, string]> = {
  LIST: ['none', 'LIST_BODY'],
  STAT: ['none', 'CHUNKS_BODY for a file, none for a directory'],
  COMMIT: ['CHUNKS_BODY: the chunks in file order, each with the keepers that acknowledged it', 'none'],
  STATUS: ['none', 'STATUS_BODY'],
  HEARTBEAT: ['HEARTBEAT_BODY (optional)', 'TASKS_BODY (optional)'],
  CHUNK_REPORT: ['CHUNK_IDS_BODY', 'none'],
  FSCK: ['none', 'FSCK_BODY'],
  WRITE_CHUNK: ['the chunk bytes, streamed', 'none'],
  READ_CHUNK: ['none', 'the chunk bytes, verified before sending'],
};

export function renderOpsTable(): string {
  const list = (Object.values(ops) as unknown[]).filter(isOperation).sort((a, b) => a.op - b.op);
  const lines = [
    '| Op | Code | Version | Request header | Reply header | Request body | Reply body |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const o of list) {
    const [reqBody, repBody] = BODIES[o.name] ?? ['none', 'none'];
    lines.push(`| ${o.name} | 0x${o.op.toString(16).padStart(4, '0')} | ${o.version} | ${fieldsInline(o.request)} | ${fieldsInline(o.response)} | ${reqBody} | ${repBody} |`);
  }
  lines.push('', 'Bodies that are records:', '');
  for (const name of ['LIST_BODY', 'CHUNKS_BODY', 'STATUS_BODY', 'HEARTBEAT_BODY', 'TASKS_BODY', 'CHUNK_IDS_BODY', 'FSCK_BODY'] as const) {
    lines.push(`- ${name}: ${fieldsInline(ops[name])}`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(`${renderOpsTable()}\n`);
