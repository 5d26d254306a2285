export { fullJitter, serverDelay } from './backoff.js';
export { classifyError, errorCode } from './classify.js';
export type {
  Breaker,
  Limiter,
  PaymentClientOptions,
  PoolOptions,
  ReconcileOptions,
  RetryBudget,
  RetryOptions,
  TimeoutOptions,
} from './client.js';
export { createPaymentClient, PaymentClient } from './client.js';
export type { AttemptOutcome } from './errors.js';
export {
  AttemptError,
  ClientClosedError,
  IdempotencyKeyInvalidError,
  InvalidOptionError,
  PaymentMismatchError,
  PaymentRetryError,
  SqliteDriverUnsupportedError,
} from './errors.js';
export type {
  ChargeInput,
  ChargeResult,
  GatewayAdapter,
  GatewayRequest,
  GatewayResponse,
  StatusResult,
} from './gateway.js';
export type { PaymentIdentity } from './idempotency-key.js';
export { assertIdempotencyKey, deriveIdempotencyKey, isValidIdempotencyKey } from './idempotency-key.js';
export type { IetfGatewayOptions } from './ietf-gateway.js';
export { IetfGateway, ietfGateway } from './ietf-gateway.js';
export type {
  AttemptRecord,
  Awaitable,
  PaymentLedger,
  PaymentRecord,
  PaymentState,
  RecordPatch,
} from './ledger.js';
export { canTransition, UNRESOLVED_STATES } from './ledger.js';
export { MemoryLedger, memoryLedger } from './memory-ledger.js';
export { parseRetryAfter } from './retry-after.js';
export type { SqliteLedgerOptions } from './sqlite-ledger.js';
export { SqliteLedger, sqliteLedger } from './sqlite-ledger.js';
export type {
  AttemptEvent,
  DeclinedOutcome,
  PaidOutcome,
  PaymentClientEvents,
  PaymentClientMetrics,
  PaymentIntent,
  PaymentOutcome,
  PayOptions,
  PendingOutcome,
  PendingReason,
  ReconciledEvent,
  ReconcileFailedEvent,
  RecoverySummary,
  RetryEvent,
} from './types.js';
