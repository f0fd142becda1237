// The transports the wire benchmark knows, loaded on demand so that each process imports only
// the one it serves or measures.

import type { Contender } from './wire-common.js';

export const CONTENDER_KEYS = ['dfs', 'net', 'http2'] as const;
export type ContenderKey = (typeof CONTENDER_KEYS)[number];

export async function loadContender(key: ContenderKey): Promise<Contender> {
  switch (key) {
    case 'dfs':
      return (await import('./wire-dfs.js')).dfsWire;
    case 'net':
      return (await import('./wire-net.js')).rawNet;
    case 'http2':
      return (await import('./wire-http2.js')).nodeHttp2;
  }
}
