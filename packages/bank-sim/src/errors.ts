/**
 * Base class of every error bank-sim throws. Branch on `code`, never on the message.
 *
 * @example
 * ```ts
 * try {
 *   await startBankSim({ rate: -1 });
 * } catch (error) {
 *   if (error instanceof BankSimError && error.code === 'ERR_INVALID_OPTION') console.error(error.option);
 * }
 * ```
 */
export class BankSimError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * An option (of `startBankSim`, `setFaults` or `POST /_faults`) has the wrong type or is out of range,
 * or is not an option at all. Thrown synchronously at construction / `setFaults()`, never per request.
 */
export class InvalidOptionError extends BankSimError {
  /** The option at fault, e.g. `faults.dropAfterChargeRate`. */
  readonly option: string;
  /** The value that was given. */
  readonly value: unknown;

  constructor(option: string, expectation: string, value: unknown) {
    super('ERR_INVALID_OPTION', `Expected \`${option}\` to be ${expectation}, got ${describe(value)}`);
    this.option = option;
    this.value = value;
  }
}

function describe(value: unknown): string {
  if (value === null) return '`null`';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  if (type === 'object') return 'an object';
  if (type === 'function') return 'a function';
  const text = type === 'string' ? JSON.stringify(value) : String(value);
  return `\`${text.length > 60 ? `${text.slice(0, 57)}...` : text}\` (${type})`;
}
