/** `value` as JSON (or `String(value)` when JSON has no form for it), for error messages. */
export function quote(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}
