// A hand-driven peer for engine tests: writes arbitrary bytes into a Connection and decodes
// every frame the Connection sends back, so tests can break the protocol on purpose.

import type { Duplex } from 'node:stream';
import { Connection, duplexPair, type ConnectionOptions } from '../../src/transport/index.js';
import {
  FrameDecoder, FrameType, encodeHello, encodePreface, parseGoAway, parseReset, type GoAway, type RawFrame, type Reset,
  type Settings,
} from '../../src/wire/index.js';

export class RawPeer {
  readonly frames: RawFrame[] = [];
  readonly conn: Connection;
  private readonly socket: Duplex;
  private readonly decoder = new FrameDecoder({ maxFrameSize: 0xff_ffff, expectPreface: true });
  private waiters: (() => void)[] = [];
  closed = false;
  /** Called with every frame the Connection sends, as it is decoded. */
  onFrame: ((f: RawFrame) => void) | null = null;

  constructor(options: Partial<ConnectionOptions> & { peerSettings?: Partial<Settings>; sendHello?: boolean } = {}) {
    const [ours, theirs] = duplexPair();
    this.socket = ours;
    this.conn = new Connection(theirs, { role: 'server', ...options });
    ours.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk, (f) => {
        this.frames.push(f);
        this.onFrame?.(f);
        for (const w of this.waiters.splice(0)) w();
      });
    });
    ours.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    ours.on('end', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    ours.on('error', () => {});
    if (options.sendHello !== false) this.write(Buffer.concat([encodePreface(), encodeHello(options.peerSettings ?? {})]));
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Waits until a frame matching `match` has arrived; fails after `ms`. */
  async waitFor(match: (f: RawFrame) => boolean, ms = 2000): Promise<RawFrame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching frame within ${ms} ms; got types ${this.frames.map((f) => f.type).join(',')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 20);
      });
    }
  }

  async goAway(ms = 2000): Promise<GoAway> {
    const f = await this.waitFor((x) => x.type === FrameType.GOAWAY && parseGoAway(x.payload).lastStreamId !== 0x7fffffff, ms);
    return parseGoAway(f.payload);
  }

  async reset(streamId: number, ms = 2000): Promise<Reset> {
    const f = await this.waitFor((x) => x.type === FrameType.RESET && x.streamId === streamId, ms);
    return parseReset(f.payload, streamId);
  }
}
