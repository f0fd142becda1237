// The server half of the wire benchmark, forked by bench/wire.ts with a contender key as its argument,
// so servers and the measuring client run on separate cores like real peers.
// Protocol with the parent over IPC: it sends { ports } or { error } once, answers { cpu } requests
// with its CPU time so far, and exits as soon as the parent goes away.

import { CONTENDER_KEYS, loadContender, type ContenderKey } from './wire-contenders.js';

export type ServerMessage = { ports: Record<string, number> } | { error: string } | { cpuUs: number };

const key = process.argv[2] as ContenderKey;
const send = (m: ServerMessage): void => {
  process.send?.(m);
};

if (!process.send) {
  console.error('bench/wire-server.ts is started by bench/wire.ts (npm run bench:wire), not directly');
  process.exit(2);
}
process.on('disconnect', () => process.exit(0));
process.on('message', (m: unknown) => {
  if (m === 'cpu') {
    const u = process.cpuUsage();
    send({ cpuUs: u.user + u.system });
  }
});

try {
  if (!CONTENDER_KEYS.includes(key)) throw new Error(`unknown contender '${key}'; one of ${CONTENDER_KEYS.join(', ')}`);
  const contender = await loadContender(key);
  send({ ports: await contender.serve() });
} catch (err) {
  send({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.disconnect?.();
  process.exitCode = 1;
}
