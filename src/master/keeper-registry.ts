// Soft state about keepers: what their latest heartbeat said and when it came. Never journaled:
// after a restart every keeper is dead until it reports again.

import type { KeeperState } from './placement.js';

export interface KeeperReport {
  id: string;
  address: string;
  zone: string;
  capacity: number;
  used: number;
  chunks: number;
  load: number;
  acceptingWrites: boolean;
  /** The keeper's last disk error, '' when none. */
  diskError: string;
}

interface Entry extends KeeperReport {
  lastSeen: number;
}

export class KeeperRegistry {
  private readonly keepers = new Map<string, Entry>();

  constructor(private readonly deadAfterMs: number, private readonly now: () => number = Date.now) {}

  report(r: KeeperReport): void {
    this.keepers.set(r.id, { ...r, lastSeen: this.now() });
  }

  isAlive(id: string): boolean {
    const k = this.keepers.get(id);
    return k !== undefined && this.now() - k.lastSeen < this.deadAfterMs;
  }

  address(id: string): string | undefined {
    return this.keepers.get(id)?.address;
  }

  get(id: string): (Entry & { alive: boolean }) | undefined {
    const k = this.keepers.get(id);
    return k && { ...k, alive: this.isAlive(id) };
  }

  all(): (Entry & { alive: boolean })[] {
    return [...this.keepers.values()].map((k) => ({ ...k, alive: this.isAlive(k.id) }));
  }

  /** The view placement needs. */
  placementView(): KeeperState[] {
    return this.all().map((k) => ({
      id: k.id, zone: k.zone, capacity: k.capacity, used: k.used, load: k.load, alive: k.alive, acceptingWrites: k.acceptingWrites,
    }));
  }
}
