/**
 * A small seeded pseudo-random generator (mulberry32): every fault the simulator injects is drawn from
 * it, so the same seed and the same order of requests give the same faults. Not for cryptography.
 *
 * @example
 * ```ts
 * const random = prng(42);
 * random.next(); // 0.6011037519201636, every time
 * ```
 */
export class Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Starts the sequence of `seed` afresh (reuses this generator instead of allocating one). */
  reseed(seed: number): void {
    this.#state = seed >>> 0;
  }

  /** A number in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  /**
   * True with probability `p`. Probabilities 0 and 1 draw nothing, so switching one fault fully on or
   * off does not shift the draws of the others.
   */
  chance(p: number): boolean {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return this.next() < p;
  }
}

/**
 * The seed of stream number `index` derived from `seed` (murmur3's 32-bit finaliser over a golden-ratio
 * step), so each request can draw from a sequence of its own that no other request's draws shift.
 */
export function streamSeed(seed: number, index: number): number {
  // The seed is mixed first: added raw, seed s + step would replay seed s's streams one request later.
  return mix32((mix32(seed | 0) + Math.imul(index, 0x9e3779b9)) | 0);
}

/** murmur3's 32-bit finaliser. */
function mix32(value: number): number {
  let h = value;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Creates a {@link Prng} seeded with `seed` (taken modulo 2^32). */
export function prng(seed: number): Prng {
  return new Prng(seed);
}
