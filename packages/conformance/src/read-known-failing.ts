import { readFile } from "node:fs/promises";
import { Code, OpalError } from "@opal/core";

/**
 * Parses a known-failing list: one test id per line; `#` starts a comment; blank lines are
 * ignored. Anything after the id on a line (a reason, a ticket) is kept out of the id:
 * `stream.digest  # vendor bug 123`.
 */
export function parseKnownFailing(text: string): string[] {
  const ids: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const id = line.replace(/#.*$/, "").trim().split(/\s+/)[0];
    if (id) ids.push(id);
  }
  return ids;
}

/** Reads a known-failing file (see {@link parseKnownFailing}); INVALID_ARGUMENT when unreadable. */
export async function readKnownFailing(path: string): Promise<string[]> {
  try {
    return parseKnownFailing(await readFile(path, "utf8"));
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `cannot read known-failing list ${path}: ${(error as Error).message}`,
    );
  }
}
