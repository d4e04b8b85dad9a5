/**
 * A small deterministic pseudo-random generator: xoshiro128** seeded through splitmix32.
 * Same seed, same sequence, on every platform (32-bit integer arithmetic only).
 */
export interface Prng {
  /** Next 32-bit unsigned integer. */
  nextUint32(): number;
  /** Next float in [0, 1) with 32 bits of randomness. */
  nextFloat(): number;
}

/** Mixes a 32-bit value (the splitmix32 / murmur3 finaliser). */
export function mix32(value: number): number {
  let z = value | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Creates a {@link Prng} from an integer seed (any safe integer; only its low 53 bits matter). */
export function createPrng(seed: number): Prng {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 0x1_0000_0000) >>> 0;
  let s = (lo ^ mix32(hi + 0x9e3779b9)) >>> 0;
  const next = () => {
    s = (s + 0x9e3779b9) >>> 0;
    return mix32(s);
  };
  let a = next();
  let b = next();
  let c = next();
  let d = next();
  if ((a | b | c | d) === 0) a = 1;
  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
  return { nextUint32, nextFloat: () => nextUint32() / 0x1_0000_0000 };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
