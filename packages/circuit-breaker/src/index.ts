export type { CallContext } from './call.js';
export type {
  CircuitBreakerEvents,
  CircuitBreakerStats,
  CircuitBreakerTotals,
  CircuitBreakerWindow,
  CircuitState,
  ExecuteOptions,
  OpenReason,
  StateChange,
  TransitionReason,
} from './circuit-breaker.js';
export { CircuitBreaker, circuitBreaker } from './circuit-breaker.js';
export type { Classifier, GatewayOutcomeFields, OutcomeKind } from './classify.js';
export { classifyGatewayOutcome, retryAfterOf } from './classify.js';
export type { RefusingState } from './errors.js';
export {
  CircuitBreakerError,
  CircuitOpenError,
  CircuitShutdownError,
  CircuitTimeoutError,
  InvalidClassificationError,
  InvalidOptionError,
  isCircuitOpenError,
  RegistryClosedError,
  RegistryFullError,
} from './errors.js';
export type { LatencyPercentiles } from './latency-histogram.js';
export type { CircuitBreakerOptions } from './options.js';
export type { CircuitBreakerRegistryOptions } from './registry.js';
export { CircuitBreakerRegistry, circuitBreakerRegistry } from './registry.js';
