import { type Admission, LoadShedder, type LoadShedderOptions, type Refusal } from '@floodgate/http';
import { RECOVERING_PRIORITY } from './checkout-guards.js';
import type { Meter } from './meter.js';
import type { MeterName } from './payments.js';

/** A checkout that sends nothing to the bank holds no place in its queue: nothing to release. */
const WITHOUT_THE_BANK: Admission = { admitted: true, release() {} };

/**
 * The floodgate shop's load shedder in front of checkout, shared by the Express and the Fastify shop:
 * each checkout it turns away (503 + `Retry-After`, nothing charged) counts as `shed` on the dashboard.
 * Counted here rather than from the response, because only the shedder knows a 503 is its own (the
 * idempotency layer answers 503 too when its store fails). A checkout of class `RECOVERING_PRIORITY` (its
 * order's payment is being recovered: it answers without the bank) is always admitted.
 *
 * @example
 * const shedder = new CheckoutShedder({ gate, breaker, maxWaitMs: 4000 }, meter);
 * app.post('/api/checkout', loadShedding({ shedder, priority: 'critical' }), checkout);
 */
export class CheckoutShedder extends LoadShedder {
  readonly #meter: Meter<MeterName>;

  constructor(options: LoadShedderOptions, meter: Meter<MeterName>) {
    super(options);
    this.#meter = meter;
  }

  override admit(priority?: string, cost?: number): Admission | Refusal {
    if (priority === RECOVERING_PRIORITY) return WITHOUT_THE_BANK;
    const admission = super.admit(priority, cost);
    if (!admission.admitted) this.#meter.mark('shed');
    return admission;
  }
}
