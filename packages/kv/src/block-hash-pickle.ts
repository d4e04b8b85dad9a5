import { type BlockHashValue, checkBlockHashValue } from "./block-hash-value";

// Hand-written because no npm package writes the exact bytes of CPython's `pickle.dumps(x,
// protocol=5)` (its C pickler, Modules/_pickle.c), and vLLM's default block hash `sha256` hashes
// those bytes. Only the types of a block-hash tuple occur: int, str, bytes, tuple and None.

const PROTO = 0x80;
const FRAME = 0x95;
const STOP = 0x2e; // "."
const NONE = 0x4e; // "N"
const BININT = 0x4a; // "J": 4-byte signed little-endian
const BININT1 = 0x4b; // "K"
const BININT2 = 0x4d; // "M"
const LONG1 = 0x8a;
const SHORT_BINUNICODE = 0x8c;
const BINUNICODE = 0x58; // "X"
const SHORT_BINBYTES = 0x43; // "C"
const BINBYTES = 0x42; // "B"
const EMPTY_TUPLE = 0x29; // ")"
const MARK = 0x28; // "("
const TUPLE = 0x74; // "t"
const TUPLE_N = [0x85, 0x86, 0x87]; // TUPLE1, TUPLE2, TUPLE3
const MEMOIZE = 0x94;
const BINGET = 0x68; // "h"
const LONG_BINGET = 0x6a; // "j"

/** CPython's framing constants (Lib/pickle.py, Modules/_pickle.c). */
const FRAME_SIZE_TARGET = 64 * 1024;
const FRAME_SIZE_MIN = 4;
const FRAME_HEADER_BYTES = 9;

const utf8 = new TextEncoder();

/** Growable output with CPython's frame bookkeeping (`frame_start`, commit, opcode boundary). */
class PickleWriter {
  private bytes = new Uint8Array(256);
  length = 0;
  private frameStart = -1;
  framing = true;
  /** Memo of objects CPython shares (see {@link sharedKey}): key -> memo index. */
  readonly memo = new Map<string, number>();
  memoCount = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }

  write(data: ArrayLike<number>): void {
    if (this.framing && this.frameStart === -1) {
      this.frameStart = this.length;
      this.reserve(FRAME_HEADER_BYTES);
      this.length += FRAME_HEADER_BYTES;
    }
    this.reserve(data.length);
    this.bytes.set(data, this.length);
    this.length += data.length;
  }

  /** `_Pickler_CommitFrame`: write the FRAME header, or drop it when the frame is tiny. */
  commitFrame(): void {
    if (this.frameStart === -1) return;
    const start = this.frameStart;
    const frameLength = this.length - start - FRAME_HEADER_BYTES;
    if (frameLength >= FRAME_SIZE_MIN) {
      this.bytes[start] = FRAME;
      writeUint64Le(this.bytes, start + 1, frameLength);
    } else {
      this.bytes.copyWithin(start, start + FRAME_HEADER_BYTES, this.length);
      this.length -= FRAME_HEADER_BYTES;
    }
    this.frameStart = -1;
  }

  /** Run before each object is saved (as `Pickler.save` does): close a frame once it is large. */
  opcodeBoundary(): void {
    if (this.frameStart === -1) return;
    if (this.length - this.frameStart - FRAME_HEADER_BYTES >= FRAME_SIZE_TARGET) this.commitFrame();
  }

  /** `_Pickler_write_bytes`: a payload of 64 KiB or more is written outside any frame. */
  writeLarge(header: number[], payload: Uint8Array): void {
    if (payload.byteLength < FRAME_SIZE_TARGET) {
      this.write(header);
      this.write(payload);
      return;
    }
    this.commitFrame();
    this.framing = false;
    this.write(header);
    this.write(payload);
    this.framing = true;
  }

  result(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

function writeUint64Le(out: Uint8Array, at: number, value: number): void {
  let v = value;
  for (let i = 0; i < 8; i++) {
    out[at + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

function uint32Le(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

/**
 * CPython keeps one shared object for the empty string, one-character strings below U+0100,
 * empty bytes and one-byte bytes, so equal values of these are one object, which pickle's memo
 * writes once and then refers to. Longer values are taken to be distinct objects, as vLLM's
 * request fields (LoRA name, salt, multimodal identifiers, hashes) are.
 */
function sharedKey(value: string | Uint8Array): string | undefined {
  if (typeof value === "string") {
    if (value.length === 0 || (value.length === 1 && value.charCodeAt(0) < 0x100))
      return `s${value}`;
    return undefined;
  }
  return value.byteLength <= 1 ? `b${value[0] ?? ""}` : undefined;
}

function saveInt(w: PickleWriter, value: number): void {
  if (value >= 0 && value <= 0xff) w.write([BININT1, value]);
  else if (value >= 0 && value <= 0xffff) w.write([BININT2, value & 0xff, value >>> 8]);
  else if (value >= -0x8000_0000 && value <= 0x7fff_ffff) w.write([BININT, ...uint32Le(value)]);
  else {
    // LONG1: the shortest little-endian two's complement that keeps the sign.
    const bytes: number[] = [];
    let v = BigInt(value);
    for (;;) {
      const byte = Number(v & 0xffn);
      bytes.push(byte);
      v >>= 8n;
      if ((v === 0n && byte < 0x80) || (v === -1n && byte >= 0x80)) break;
    }
    w.write([LONG1, bytes.length, ...bytes]);
  }
}

function memoize(w: PickleWriter, key: string | undefined): void {
  if (key !== undefined) w.memo.set(key, w.memoCount);
  w.memoCount++;
  w.write([MEMOIZE]);
}

function save(w: PickleWriter, value: BlockHashValue): void {
  w.opcodeBoundary();
  if (value === null) w.write([NONE]);
  else if (typeof value === "number") saveInt(w, value);
  else if (Array.isArray(value)) saveTuple(w, value);
  else {
    const item = value as string | Uint8Array;
    const key = sharedKey(item);
    const memoIndex = key === undefined ? undefined : w.memo.get(key);
    if (memoIndex !== undefined) {
      w.write(memoIndex < 0x100 ? [BINGET, memoIndex] : [LONG_BINGET, ...uint32Le(memoIndex)]);
    } else if (typeof item === "string") {
      const bytes = utf8.encode(item);
      const n = bytes.byteLength;
      w.writeLarge(n < 0x100 ? [SHORT_BINUNICODE, n] : [BINUNICODE, ...uint32Le(n)], bytes);
      memoize(w, key);
    } else {
      const n = item.byteLength;
      w.writeLarge(n < 0x100 ? [SHORT_BINBYTES, n] : [BINBYTES, ...uint32Le(n)], item);
      memoize(w, key);
    }
  }
}

function saveTuple(w: PickleWriter, items: readonly BlockHashValue[]): void {
  if (items.length === 0) {
    w.write([EMPTY_TUPLE]);
    return;
  }
  if (items.length <= 3) {
    for (const item of items) save(w, item);
    w.write([TUPLE_N[items.length - 1] as number]);
  } else {
    w.write([MARK]);
    for (const item of items) save(w, item);
    w.write([TUPLE]);
  }
  memoize(w, undefined);
}

/**
 * The bytes of CPython's `pickle.dumps(value, protocol=5)` (vLLM's `pickle.HIGHEST_PROTOCOL` on
 * Python 3.8+), arrays taken as tuples: opcodes as the C pickler chooses them (BININT1/2/BININT or
 * LONG1 by value, SHORT_BINUNICODE/BINUNICODE, SHORT_BINBYTES/BINBYTES, EMPTY_TUPLE, TUPLE1-3 or
 * MARK..TUPLE), MEMOIZE after every str, bytes and non-empty tuple, memo references for the values
 * CPython shares, and 64 KiB framing with large payloads written outside frames.
 *
 * @throws KvFormatError OUT_OF_RANGE for a value that is not a {@link BlockHashValue}.
 */
export function encodePickle(value: BlockHashValue): Uint8Array {
  checkBlockHashValue(value);
  const w = new PickleWriter();
  w.framing = false;
  w.write([PROTO, 5]);
  w.framing = true;
  save(w, value);
  w.write([STOP]);
  w.commitFrame();
  return w.result();
}
