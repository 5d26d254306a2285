/**
 * The base class of every error `@floodgate/circuit-breaker` throws or rejects with. Branch on `code`
 * (stable) or on `instanceof`, never on the message.
 */
export class CircuitBreakerError extends Error {
  /** A stable, machine-readable code such as `ERR_CIRCUIT_OPEN`. */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A caller's mistake: an option or argument that is out of range, of the wrong type, or unknown.
 * Thrown by the constructor (or the registry), so a bad configuration fails at start-up.
 */
export class InvalidOptionError extends CircuitBreakerError {
  declare readonly code: 'ERR_INVALID_OPTION';
  /** The option or argument at fault, e.g. `timeoutMs`. */
  readonly option: string;
  /** The value that was given. */
  readonly value: unknown;

  constructor(option: string, expected: string, value: unknown) {
    super('ERR_INVALID_OPTION', `Expected \`${option}\` to be ${expected}, got ${describe(value)}`);
    this.option = option;
    this.value = value;
  }
}

/** The state a breaker was in when it refused a call. */
export type RefusingState = 'open' | 'half-open';

/**
 * The circuit is open (or half-open with every probe slot taken): the call was refused at once and the
 * wrapped function was not called, so nothing was sent.
 *
 * The breaker builds this error without a stack trace, and the calls it refuses in the same state with
 * the same `retryAfterMs` (the same millisecond, in practice) share one instance: treat it as read-only.
 * That keeps a refusal cheap (see the README's benchmark); the breaker's `name` in `circuit` says where it
 * came from.
 */
export class CircuitOpenError extends CircuitBreakerError {
  declare readonly code: 'ERR_CIRCUIT_OPEN';
  /**
   * Ms until the breaker lets a call through again (open: until it turns half-open; half-open: an
   * estimate of when the probes in flight will have answered). For a `Retry-After` header, round up to
   * seconds.
   */
  readonly retryAfterMs: number;
  /** The breaker's `name`. */
  readonly circuit: string;
  /** Whether the breaker was open or half-open with every probe slot taken. */
  readonly state: RefusingState;

  constructor(circuit: string, retryAfterMs: number, state: RefusingState = 'open', message?: string) {
    super('ERR_CIRCUIT_OPEN', message ?? `Circuit \`${circuit}\` is ${state}`);
    this.circuit = circuit;
    this.retryAfterMs = retryAfterMs;
    this.state = state;
  }
}

/**
 * The call took longer than the breaker's `timeoutMs`. The call's own `ctx.signal` was aborted with
 * this error as its reason (only that call's: other calls in flight are not touched). It counts as a
 * failure of the gateway. `name` is `TimeoutError`, like the DOM's, so generic code recognises it.
 */
export class CircuitTimeoutError extends CircuitBreakerError {
  declare readonly code: 'ERR_CIRCUIT_TIMEOUT';
  /** The limit that was exceeded, in ms. */
  readonly timeoutMs: number;
  /** The breaker's `name`. */
  readonly circuit: string;

  constructor(circuit: string, timeoutMs: number) {
    super('ERR_CIRCUIT_TIMEOUT', `Circuit \`${circuit}\`: call timed out after ${timeoutMs} ms`);
    this.name = 'TimeoutError';
    this.circuit = circuit;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The breaker was shut down with `close()`: calls made afterwards are refused, and calls still in flight
 * at that moment are rejected with it (their `ctx.signal` is aborted with it as the reason).
 */
export class CircuitShutdownError extends CircuitBreakerError {
  declare readonly code: 'ERR_CIRCUIT_SHUTDOWN';
  /** The breaker's `name`. */
  readonly circuit: string;

  constructor(circuit: string) {
    super('ERR_CIRCUIT_SHUTDOWN', `Circuit \`${circuit}\` has been shut down`);
    this.circuit = circuit;
  }
}

/**
 * The registry holds `maxBreakers` breakers and every one of them has calls in flight, so none can be
 * evicted to make room for a new key.
 */
export class RegistryFullError extends CircuitBreakerError {
  declare readonly code: 'ERR_REGISTRY_FULL';
  /** The bound that was reached. */
  readonly maxBreakers: number;
  /** The key that could not get a breaker. */
  readonly key: string;

  constructor(key: string, maxBreakers: number) {
    super(
      'ERR_REGISTRY_FULL',
      `Circuit breaker registry is full (${maxBreakers} breakers, all busy): no breaker for \`${key}\``,
    );
    this.key = key;
    this.maxBreakers = maxBreakers;
  }
}

/**
 * The registry was closed with `close()`: it holds no breakers and makes no new ones, so `get` throws
 * and `execute` rejects with this error. Nothing was called.
 */
export class RegistryClosedError extends CircuitBreakerError {
  declare readonly code: 'ERR_REGISTRY_CLOSED';
  /** The key that was asked for. */
  readonly key: string;
  constructor(key: string) {
    super('ERR_REGISTRY_CLOSED', `Circuit breaker registry has been closed: no breaker for \`${key}\``);
    this.key = key;
  }
}

/**
 * The breaker's `classify` option misbehaved: it returned something other than `'success'`, `'failure'`,
 * `'throttled'` or `'ignored'` (a typo such as `'sucess'`, `undefined` from a missing `return`, a
 * boolean), or it threw (its error is the `cause`). The call itself was counted as a failure, the safe
 * side, and its caller got its own answer; this error reports the bug in the classifier.
 *
 * The breaker never throws it: it goes out through `process.emitWarning` (printed to stderr, heard by
 * `process.on('warning')`), once per distinct bug and breaker.
 */
export class InvalidClassificationError extends CircuitBreakerError {
  declare readonly code: 'ERR_INVALID_CLASSIFICATION';
  /** The option at fault: always `classify`. */
  readonly option: 'classify';
  /** The breaker's `name`. */
  readonly circuit: string;
  /** Whether `classify` threw (its error is `cause`) rather than returned a bad `value`. */
  readonly threw: boolean;
  /** What `classify` returned; `undefined` when it threw. */
  readonly value: unknown;

  /** @param returnedOrThrown what `classify` returned, or what it threw when `threw` is true. */
  constructor(circuit: string, threw: boolean, returnedOrThrown: unknown) {
    super(
      'ERR_INVALID_CLASSIFICATION',
      threw
        ? `\`classify\` of circuit \`${circuit}\` threw ${thrownText(returnedOrThrown)}; the call was counted as a failure`
        : `Expected \`classify\` of circuit \`${circuit}\` to return 'success', 'failure', 'throttled' or 'ignored', got ${describe(returnedOrThrown)}; the call was counted as a failure`,
      threw ? { cause: returnedOrThrown } : undefined,
    );
    this.option = 'classify';
    this.circuit = circuit;
    this.threw = threw;
    this.value = threw ? undefined : returnedOrThrown;
  }
}

/** `isCircuitOpenError(e)` is true for a `CircuitOpenError`, also one from another copy of this package. */
export function isCircuitOpenError(error: unknown): error is CircuitOpenError {
  return (
    error instanceof CircuitOpenError ||
    (typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'ERR_CIRCUIT_OPEN')
  );
}

function thrownText(error: unknown): string {
  if (!(error instanceof Error)) return describe(error);
  try {
    return `${error.name}: ${error.message}`;
  } catch {
    return 'an Error'; // a getter that throws: the error itself is still the `cause`
  }
}

function describe(value: unknown): string {
  let shown: string;
  if (typeof value === 'string') shown = JSON.stringify(value);
  else if (typeof value === 'function') shown = `[Function ${value.name || 'anonymous'}]`;
  else if (typeof value === 'bigint') shown = `${value}n`;
  else if (value !== null && typeof value === 'object') shown = shape(value);
  else shown = String(value);
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return `\`${shown}\` (${type})`;
}

/**
 * An object by its key names, never its values: options may hold secrets (a Redis URL with a password)
 * and reading values could run getters or `toJSON`. An array of plain values is shown as it is.
 */
function shape(value: object): string {
  if (Array.isArray(value)) {
    if (value.some((item) => item !== null && typeof item === 'object')) return `[${value.length} items]`;
    try {
      return JSON.stringify(value);
    } catch {
      return `[${value.length} items]`; // a BigInt inside
    }
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return '{}';
  return `{ ${keys.length > 6 ? `${keys.slice(0, 6).join(', ')}, ...` : keys.join(', ')} }`;
}
