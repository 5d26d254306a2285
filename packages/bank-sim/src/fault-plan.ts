import { type Faults, resolveFaults } from './options.js';
import type { Prng } from './prng.js';

/** Options of {@link FaultPlan}. */
export interface FaultPlanOptions {
  readonly faults: Faults;
  readonly random: Prng;
  readonly clock: () => number;
  /** Called when the gateway goes down (`true`) or comes back (`false`). */
  readonly onChange?: (down: boolean) => void;
}

/**
 * The faults in force and the state they imply: whether an outage window is open, how long it has
 * left, and whether the gateway is recovering (reduced rate). Outage windows are timers (unref'd),
 * measured from the moment they were set; windows may overlap (down while any is open).
 *
 * @example
 * ```ts
 * const plan = new FaultPlan({ faults: defaultFaults, random: prng(1), clock: () => performance.now() });
 * plan.set({ outages: [{ startMs: 0, durationMs: 5000 }], recoveryMs: 10_000 });
 * plan.down; // true
 * ```
 */
export class FaultPlan {
  #faults: Faults;
  readonly #random: Prng;
  readonly #clock: () => number;
  readonly #onChange: ((down: boolean) => void) | undefined;
  readonly #timers = new Set<NodeJS.Timeout>();
  #open = 0;
  #downUntil = 0;
  #recoveringUntil = Number.NEGATIVE_INFINITY;
  #closed = false;

  constructor(options: FaultPlanOptions) {
    this.#faults = options.faults;
    this.#random = options.random;
    this.#clock = options.clock;
    this.#onChange = options.onChange;
    this.#schedule();
  }

  get faults(): Faults {
    return this.#faults;
  }

  /** Whether an outage window is open now. */
  get down(): boolean {
    return this.#open > 0;
  }

  /** Milliseconds left in the current outage (0 when up). */
  downForMs(now: number): number {
    return this.#open > 0 ? Math.max(0, this.#downUntil - now) : 0;
  }

  /** The factor applied to the flow limit's rate at `now` (< 1 while recovering from an outage). */
  rateFactor(now: number): number {
    return now < this.#recoveringUntil ? this.#faults.recoveryRateFactor : 1;
  }

  /** Until when {@link rateFactor}'s answer at `now` holds (after it the rate is whole again). */
  rateFactorUntil(now: number): number {
    return now < this.#recoveringUntil ? this.#recoveringUntil : Number.POSITIVE_INFINITY;
  }

  /** True with probability `p`, from the seeded generator. */
  chance(p: number): boolean {
    return this.#random.chance(p);
  }

  /**
   * Merges `partial` over the faults in force. Setting `outages` (even to `[]`) ends any open outage
   * and schedules the new windows from now.
   * @throws {InvalidOptionError} on an unknown key or bad value (nothing is changed then).
   */
  set(partial: Partial<Faults>): Faults {
    const next = resolveFaults(partial, this.#faults);
    this.#faults = next;
    if (Object.hasOwn(partial, 'outages')) this.#schedule();
    return next;
  }

  close(): void {
    this.#closed = true;
    this.#clearTimers();
  }

  #schedule(): void {
    this.#clearTimers();
    if (this.#open > 0) {
      this.#open = 0;
      this.#leave();
    }
    // Closed: the faults are kept (they are still reported) but no window opens and no timer is armed.
    if (this.#closed) return;
    const now = this.#clock();
    for (const window of this.#faults.outages) {
      if (window.startMs === 0) this.#enter(now + window.durationMs, window.durationMs);
      else
        this.#timer(window.startMs, () => this.#enter(this.#clock() + window.durationMs, window.durationMs));
    }
  }

  #enter(until: number, durationMs: number): void {
    this.#open++;
    if (until > this.#downUntil || this.#open === 1) this.#downUntil = until;
    this.#timer(durationMs, () => {
      this.#open--;
      if (this.#open === 0) this.#leave();
    });
    if (this.#open === 1) this.#onChange?.(true);
  }

  #leave(): void {
    this.#recoveringUntil = this.#clock() + this.#faults.recoveryMs;
    if (!this.#closed) this.#onChange?.(false);
  }

  #timer(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    this.#timers.add(timer);
  }

  #clearTimers(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}
