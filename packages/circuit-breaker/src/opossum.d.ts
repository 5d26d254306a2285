// opossum 9 ships no TypeScript types (and @types/opossum lags behind it). These are the parts of its
// API that floodgate uses, checked against node_modules/opossum/lib/circuit.js.
declare module 'opossum' {
  interface RotateBucketController {
    on(event: string, listener: (...args: unknown[]) => void): unknown;
    removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
    listenerCount(event: string, listener?: (...args: unknown[]) => void): number;
  }

  interface OpossumOptions {
    name?: string;
    timeout?: number | false;
    resetTimeout?: number;
    errorThresholdPercentage?: number;
    volumeThreshold?: number;
    rollingCountTimeout?: number;
    rollingCountBuckets?: number;
    rollingPercentilesEnabled?: boolean;
    enableSnapshots?: boolean;
    rotateBucketController?: RotateBucketController;
    abortController?: AbortController;
    errorFilter?: (error: unknown, ...args: unknown[]) => boolean;
    capacity?: number;
  }

  class CircuitBreaker<TArgs extends unknown[] = unknown[], TResult = unknown> {
    constructor(action: (...args: TArgs) => TResult | PromiseLike<TResult>, options?: OpossumOptions);
    /** The options object, mutated by opossum to hold its defaults; `resetTimeout` is read when it opens. */
    readonly options: OpossumOptions & { resetTimeout: number };
    readonly name: string;
    readonly opened: boolean;
    readonly closed: boolean;
    readonly halfOpen: boolean;
    readonly isShutdown: boolean;
    fire(...args: TArgs): Promise<TResult>;
    fallback(fn: (...args: unknown[]) => unknown): this;
    open(): void;
    close(): void;
    shutdown(): void;
    on(event: string, listener: (...args: unknown[]) => void): this;
    listenerCount(event: string): number;
  }

  export = CircuitBreaker;
}
