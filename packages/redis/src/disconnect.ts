import type { RedisClient } from './options.js';

/**
 * Disconnects a client the store owns and resolves once its socket is gone: a store's `close()` must
 * leave nothing behind, and must not hang on a Redis that no longer answers.
 *
 * ioredis's `disconnect()` only half-closes the socket (`end()`, a FIN) and waits for the server to close
 * its side. A server that never answers (a black hole, a half-dead proxy) leaves it open until
 * `connectTimeout` or longer. So a client that is not ready (nothing in flight worth flushing) has its
 * socket destroyed at once, and a ready one gets `timeoutMs` to close gracefully before it is.
 */
export async function disconnectClient(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'end') return;
  const ended = new Promise<void>((resolve) => client.once('end', resolve));
  const ready = client.status === 'ready';
  // Between attempts there is no socket: disconnect() only cancels the next attempt, and no 'end' comes.
  const reconnecting = client.status === 'reconnecting';
  client.disconnect();
  if (reconnecting) return;
  if (!ready) destroySocket(client);
  if (await within(ended, timeoutMs)) return;
  // Destroyed already (not ready): waiting again would only double the wait, since a reconnecting client
  // whose socket is long gone may never say 'end'.
  if (!ready) return;
  destroySocket(client);
  await within(ended, timeoutMs);
}

/** Force-closes a standalone client's socket (a Cluster's nodes are closed by its own `disconnect()`). */
function destroySocket(client: RedisClient): void {
  (client as { stream?: { destroy?: () => void } }).stream?.destroy?.();
}

/** Whether `promise` settled within `ms` (an unref'd timer bounds the wait). */
function within(promise: Promise<void>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
