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
  /** Dead from this time on unless it reports again. */
  deadAt: number;
}

export class KeeperRegistry {
  private readonly keepers = new Map<string, Entry>();

  constructor(private readonly deadAfterMs: number, private readonly now: () => number = Date.now) {}

  report(r: KeeperReport): void {
    const now = this.now();
    this.keepers.set(r.id, { ...r, lastSeen: now, deadAt: now + this.deadAfterMs });
  }

  /**
   * The connection a keeper heartbeats on closed. A live keeper reconnects and reports within a
   * moment; one that does not within `graceMs` is dead then, without waiting out the full silence.
   * A process that crashed is noticed in about `graceMs` instead of the dead-after time.
   */
  connectionLost(id: string, graceMs: number): void {
    const k = this.keepers.get(id);
    if (k !== undefined) k.deadAt = Math.min(k.deadAt, this.now() + graceMs);
  }

  /** Drops everything known about a keeper that has been forgotten. */
  remove(id: string): void {
    this.keepers.delete(id);
  }

  isAlive(id: string): boolean {
    const k = this.keepers.get(id);
    return k !== undefined && this.now() < k.deadAt;
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
