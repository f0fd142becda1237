// How the client commands print numbers for people: sizes in binary units, rates, durations, tables.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 0 B, 1023 B, 1.0 KiB, 8.0 MiB, 512 MiB: binary units, one decimal below 100 of the unit. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  if (n < 1024) return `${Math.round(n)} B`;
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  // 1023.96 KiB would print as 1024.0 KiB: move up a unit instead.
  if (value.toFixed(1) === '1024.0' && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ${UNITS[unit]}`;
}

/** Bytes per second, e.g. 12.5 MiB/s. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** Seconds as M:SS or H:MM:SS; '--:--' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** Milliseconds since the epoch as 2024-05-01 13:45 (UTC), the way ls -l shows times. */
export function formatTime(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '-';
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

/** Columns padded to their widest cell; columns listed in `right` are right-aligned (numbers). */
export function formatTable(rows: string[][], right: ReadonlySet<number> = new Set()): string {
  if (rows.length === 0) return '';
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => {
      if (i === row.length - 1 && !right.has(i)) return cell;
      return right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
    }).join('  '))
    .join('\n');
}
