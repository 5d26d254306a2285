import { createHash } from 'node:crypto';
import type { BucketSpec, StoreDecision } from '@floodgate/token-bucket';

/**
 * The token-bucket script. One call applies a batch of operations on ONE bucket, in order, atomically,
 * at the Redis server's clock (`TIME`), so clocks that disagree across machines do not matter.
 *
 * Why a token bucket (tokens + timestamp) and not GCRA (one "theoretical arrival time"): both are the same
 * bucket (tokens = capacity - (tat - now) * rate), but storing tokens keeps the Redis state identical to
 * the in-process bucket of `@floodgate/token-bucket`, so a decision does not change when a limiter moves
 * from the memory store to Redis, and the script can be checked against the same reference model.
 * Reservations are simply negative tokens (debt); a refund adds tokens back, capped at capacity.
 *
 * Layout: KEYS[1] is a string "<tokens> <server ms of tokens>" (one SET ... PX writes state and expiry
 * together). A missing key is a full bucket: the key is deleted when full and otherwise expires when it
 * would be full again. KEYS[2..] are operation records (idempotent spending): plain strings
 * "<remaining> <resetAfterMs> <server ms the tokens are ready>" with a TTL of the operation TTL plus the
 * grant's wait, so the refund of a take abandoned during a long wait still finds its record. Once a
 * consume has replayed a record, its resetAfterMs carries a leading '+' (SET ... KEEPTTL): a mark rather
 * than a fourth field because a script of an earlier version, still running on other instances during a
 * rolling upgrade, parses exactly three fields and reads "+1234" as 1234. Every key carries the same hash
 * tag, so a call touches one Cluster slot. The two layouts can meet: limiter key `k}:op:x` is stored where
 * key `k` keeps its record of operationId `x}`. A value of the other shape therefore reads as no state (a
 * full bucket) or no record, never as a script error, which would mark the store degraded for every key.
 *
 * ARGV: capacity, refillPerMs, operation TTL (ms), now ('' = server TIME; set only by the semantics tests),
 * then 4 per operation: kind ('c' consume, 'r' refund), cost, maxWaitMs, index in KEYS of the operation
 * record (0 = none). A refund that names a record gives its tokens back and deletes it in the same step,
 * so an abandoned operation is decided afresh when retried rather than replayed as granted with tokens
 * that went back; but only a record that exists and was never replayed. A replay may be in use by a take
 * that spent nothing (two takes of one id in flight, the first abandoned), so its tokens stay spent and
 * the record stays; a missing record cannot say whether it was replayed, so it gives nothing back either
 * (both strict, never minting; the same rule as the memory store's). Reply: 5
 * integers per consume (refunds answer nothing): allowed (0/1, 2 = replayed from the record), remaining,
 * retryAfterMs, resetAfterMs, waitMs, the durations in whole ms rounded up (a caller is never early; Redis
 * would truncate fractions anyway), retryAfterMs -1 meaning "never" (cost above capacity).
 */
export const BUCKET_SCRIPT = `local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now
if ARGV[4] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
else
  now = tonumber(ARGV[4])
end
local state = redis.call('GET', KEYS[1])
local tokens = capacity
local ts = now
local t, s
if state then t, s = string.match(state, '^(%S+) (%S+)$') end
if t then
  tokens = tonumber(t)
  ts = tonumber(s)
  if now > ts then
    tokens = tokens + (now - ts) * rate
    ts = now
  end
  if tokens > capacity then tokens = capacity end
end
local fmt = '%.17g'
local out = {}
local changed = false
for i = 5, #ARGV, 4 do
  local cost = tonumber(ARGV[i + 1])
  if ARGV[i] == 'r' then
    local give = true
    local opIndex = tonumber(ARGV[i + 3])
    if opIndex > 0 then
      local record = redis.call('GET', KEYS[opIndex])
      if record and not string.match(record, '^%S+ %+') then
        redis.call('DEL', KEYS[opIndex])
      else
        give = false
      end
    end
    if give then
      tokens = tokens + cost
      if tokens > capacity then tokens = capacity end
      changed = true
    end
  else
    local remaining, reset, readyAt
    local opIndex = tonumber(ARGV[i + 3])
    if opIndex > 0 then
      local record = redis.call('GET', KEYS[opIndex])
      if record then remaining, reset, readyAt = string.match(record, '^(%S+) (%S+) (%S+)$') end
    end
    if readyAt then
      if string.sub(reset, 1, 1) ~= '+' then
        redis.call('SET', KEYS[opIndex], remaining .. ' +' .. reset .. ' ' .. readyAt, 'KEEPTTL')
      end
      local wait = tonumber(readyAt) - now
      if wait < 0 then wait = 0 end
      out[#out + 1] = 2
      out[#out + 1] = tonumber(remaining)
      out[#out + 1] = 0
      out[#out + 1] = tonumber(reset)
      out[#out + 1] = math.ceil(wait)
    else
      local allowed = 0
      local wait = 0
      local retry = 0
      if tokens >= cost then
        allowed = 1
      else
        wait = (cost - tokens) / rate
        if cost <= capacity and wait <= tonumber(ARGV[i + 2]) then
          allowed = 1
        elseif cost > capacity then
          retry = -1
        else
          retry = wait
        end
      end
      if allowed == 1 then
        tokens = tokens - cost
        changed = true
      else
        wait = 0
      end
      local remaining = 0
      if tokens >= 1 then remaining = math.floor(tokens) end
      local reset = math.ceil((capacity - tokens) / rate)
      out[#out + 1] = allowed
      out[#out + 1] = remaining
      out[#out + 1] = math.ceil(retry)
      out[#out + 1] = reset
      out[#out + 1] = math.ceil(wait)
      if allowed == 1 and opIndex > 0 then
        redis.call('SET', KEYS[opIndex], remaining .. ' ' .. string.format('%d', reset) .. ' ' .. string.format(fmt, now + wait), 'PX', string.format('%d', tonumber(ARGV[3]) + math.ceil(wait)))
      end
    end
  end
end
if changed then
  if tokens >= capacity then
    redis.call('DEL', KEYS[1])
  else
    local ttl = string.format('%d', math.ceil((capacity - tokens) / rate) + 1)
    redis.call('SET', KEYS[1], string.format('%.17g %.17g', tokens, ts), 'PX', ttl)
  end
end
return out
`;

/**
 * Heartbeats of live store instances (for the local fallback's share of the limit). A sorted set of
 * instance ids scored by the server time of their last beat; stale members are dropped on every beat.
 * ARGV: instance id, ttl ms. Reply: the number of live instances, this one included.
 */
export const HEARTBEAT_SCRIPT = `local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - ttl))
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl * 2))
return redis.call('ZCARD', KEYS[1])
`;

/** The SHA1 a script is cached under by `SCRIPT LOAD`, for `EVALSHA`. */
export function scriptSha(lua: string): string {
  return createHash('sha1').update(lua).digest('hex');
}

/** One operation of a batch. */
export type BucketOperation =
  | { readonly kind: 'consume'; readonly cost: number; readonly maxWaitMs: number; readonly opKey?: string }
  | { readonly kind: 'refund'; readonly cost: number; readonly opKey?: string };

/**
 * Builds the `KEYS` and `ARGV` of one script call. `now` is only for the semantics tests (a server-side
 * clock the test controls); production calls leave it undefined so the script reads `TIME`.
 */
export function encodeBatch(
  bucketKey: string,
  spec: BucketSpec,
  operationTtlMs: number,
  operations: readonly BucketOperation[],
  now?: number,
): { keys: string[]; args: (string | number)[] } {
  const keys = [bucketKey];
  const args: (string | number)[] = [spec.capacity, spec.refillPerMs, operationTtlMs, now ?? ''];
  for (const operation of operations) {
    const kind = operation.kind === 'refund' ? 'r' : 'c';
    const maxWaitMs = operation.kind === 'refund' ? 0 : operation.maxWaitMs;
    if (operation.opKey === undefined) {
      args.push(kind, operation.cost, maxWaitMs, 0);
    } else {
      keys.push(operation.opKey);
      args.push(kind, operation.cost, maxWaitMs, keys.length);
    }
  }
  return { keys, args };
}

/** Reads the decision of the `index`-th consume of a batch out of the script's flat reply. */
export function decodeDecision(reply: readonly unknown[], index: number, capacity: number): StoreDecision {
  const at = index * 5;
  // Number(): a client created with ioredis's `stringNumbers` answers every integer as a string ('1'),
  // which compared with 1 read as a denial, every time. For a number it is the identity.
  const retry = Number(reply[at + 2]);
  const allowed = Number(reply[at]);
  // Whole ms, rounded up in the script (as the memory store answers): a caller that sleeps `waitMs` or
  // retries after `retryAfterMs` is never early, and headers need no further rounding.
  const decision: StoreDecision = {
    allowed: allowed === 1 || allowed === 2,
    limit: capacity,
    remaining: Number(reply[at + 1]),
    retryAfterMs: retry < 0 ? Number.POSITIVE_INFINITY : retry,
    resetAfterMs: Number(reply[at + 3]),
    waitMs: Number(reply[at + 4]),
  };
  // A replay spent nothing: flagged so that abandoning it refunds nothing (see the store contract).
  return allowed === 2 ? { ...decision, replayed: true } : decision;
}
