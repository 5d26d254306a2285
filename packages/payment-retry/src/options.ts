import { InvalidOptionError } from './errors.js';

/** Rejects a non-object and unknown keys, so a typo in an option name fails loudly at start-up. */
export function checkOptions(name: string, value: unknown, known: readonly string[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(name, 'an object', value);
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(
        name === 'options' ? key : `${name}.${key}`,
        `a known option (one of ${known.join(', ')})`,
        (value as Record<string, unknown>)[key],
      );
    }
  }
}

export function finiteAtLeast(option: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidOptionError(option, `a finite number >= ${min}`, value);
  }
  return value;
}

export function integerAtLeast(option: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidOptionError(option, `an integer >= ${min}`, value);
  }
  return value;
}
