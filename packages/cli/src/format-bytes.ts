/** `n` bytes for people: `512 B`, `1.5 KiB`, `12.3 MiB`, `2.00 GiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** A transfer rate for people: `formatBytes(bytes / seconds)` + `/s`; `-` before any time passed. */
export function formatRate(bytes: number, elapsedMs: number): string {
  return elapsedMs > 0 ? `${formatBytes((bytes * 1000) / elapsedMs)}/s` : "-";
}
