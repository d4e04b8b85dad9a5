import { type Channel, createChannel } from "@opal/core";

/**
 * `count` copies of `source`, which is read once, at the pace of the slowest copy still open (one
 * item buffered per copy): a pool uploads one stream of weights to each of its devices. A copy
 * whose reader stops early (`break`), or that its owner closes (`close()`, e.g. once the upload it
 * feeds has ended either way), is left behind; once no copy is left, `source` is ended. A failure
 * of `source` fails every copy.
 */
export function fanOut<T>(source: AsyncIterable<T>, count: number): Channel<T>[] {
  const copies = Array.from({ length: count }, () => createChannel<T>({ capacity: 1 }));
  void (async () => {
    try {
      for await (const item of source) {
        // A copy left behind rejects the send; the others go on.
        const sent = await Promise.allSettled(copies.map((copy) => copy.send(item)));
        if (sent.every((s) => s.status === "rejected")) return;
      }
      for (const copy of copies) copy.close();
    } catch (error) {
      for (const copy of copies) copy.fail(error);
    }
  })();
  return copies;
}
