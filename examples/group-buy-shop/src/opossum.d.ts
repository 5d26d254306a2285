// opossum ships no type declarations and @types/opossum is not installed here: the part this shop uses.
declare module 'opossum' {
  import { EventEmitter } from 'node:events';

  namespace CircuitBreaker {
    interface Options {
      timeout?: number | false;
      errorThresholdPercentage?: number;
      resetTimeout?: number;
      volumeThreshold?: number;
      rollingCountTimeout?: number;
      errorFilter?: (error: unknown) => boolean;
      abortController?: AbortController;
    }
  }

  class CircuitBreaker<Args extends unknown[] = unknown[], Result = unknown> extends EventEmitter {
    constructor(action: (...args: Args) => Promise<Result>, options?: CircuitBreaker.Options);
    fire(...args: Args): Promise<Result>;
    readonly opened: boolean;
    readonly halfOpen: boolean;
    readonly closed: boolean;
    shutdown(): void;
  }

  export = CircuitBreaker;
}
