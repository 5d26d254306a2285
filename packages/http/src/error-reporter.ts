import { checkFunction } from './validate.js';

/**
 * The `onError` option as the middleware calls it: checked at construction (`undefined` reports
 * nothing), and a reporter that throws is ignored. Reporting must not change an answer, and the callers
 * promise never to reject for a handled failure (Express does not await them, so a rejection would be an
 * unhandled one). Only failures pay for the wrapper.
 */
export function errorReporter(onError: unknown): (error: unknown) => void {
  if (onError === undefined) return () => {};
  const report = checkFunction<(error: unknown) => void>('onError', onError);
  return (error) => {
    try {
      report(error);
    } catch {
      // Ignored: see above.
    }
  };
}
