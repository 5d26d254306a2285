import type { RedisClient } from './options.js';

/**
 * Disconnects a client the store owns and waits until its socket is gone, but at most `timeoutMs`: a
 * store's `close()` must leave nothing behind, and must not hang on a Redis that no longer answers.
 */
export async function disconnectClient(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'end') return;
  const ended = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    client.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  client.disconnect();
  await ended;
}
