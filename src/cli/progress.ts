// The progress line of put and get on a terminal: bytes, percentage and bar, rate and ETA.
// Redrawn in place at most a few times a second; never drawn when stderr is not a terminal.

import { formatBytes, formatDuration, formatRate } from './format.js';

export interface ProgressState {
  bytes: number;
  /** Total bytes when known. */
  total?: number;
  elapsedMs: number;
  /** Columns available; the bar shrinks to fit. */
  width?: number;
}

/**
 * One line: `  12.0 MiB / 40.0 MiB  30% [######              ]  6.0 MiB/s  ETA 0:05`.
 * Without a total: bytes and rate only. Pure, so tests pin the exact text.
 */
export function formatProgress(p: ProgressState): string {
  const seconds = p.elapsedMs / 1000;
  const rate = seconds > 0 ? p.bytes / seconds : 0;
  const rateText = seconds > 0 ? formatRate(rate) : '-- B/s';
  if (p.total === undefined) return `${formatBytes(p.bytes)}  ${rateText}`;
  const fraction = p.total === 0 ? 1 : Math.min(1, p.bytes / p.total);
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  const eta = p.bytes >= p.total ? 'done' : rate > 0 ? `ETA ${formatDuration((p.total - p.bytes) / rate)}` : 'ETA --:--';
  const head = `${formatBytes(p.bytes)} / ${formatBytes(p.total)} ${percent}`;
  const tail = `${rateText}  ${eta}`;
  // A width of 0 is what some pseudo-terminals report when they do not know: take 80.
  const barWidth = Math.min(30, (p.width || 80) - head.length - tail.length - 8);
  if (barWidth < 5) return `${head}  ${tail}`;
  const filled = Math.round(fraction * barWidth);
  return `${head} [${'#'.repeat(filled)}${' '.repeat(barWidth - filled)}]  ${tail}`;
}

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Draws formatProgress on a terminal line, throttled; a no-op when disabled. */
export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  private bytes = 0;
  private drawn = false;

  constructor(
    private readonly out: ProgressStream,
    private readonly total: number | undefined,
    private readonly enabled: boolean,
    private readonly intervalMs = 200,
  ) {}

  /** Whether a bar should be drawn: only on a terminal, and not when asked to be quiet. */
  static wanted(out: ProgressStream, quiet: boolean): boolean {
    return !quiet && out.isTTY === true;
  }

  update(bytes: number): void {
    this.bytes = bytes;
    const now = Date.now();
    if (!this.enabled || now - this.lastDraw < this.intervalMs) return;
    this.lastDraw = now;
    this.draw();
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    if (!this.enabled) return;
    this.draw();
    this.out.write('\n');
  }

  /** Clears the line, for when the command fails and an error line follows. */
  clear(): void {
    if (!this.enabled || !this.drawn) return;
    this.out.write('\r\x1b[2K');
  }

  private draw(): void {
    const line = formatProgress({ bytes: this.bytes, total: this.total, elapsedMs: Date.now() - this.started, width: this.out.columns });
    this.out.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }
}
