/**
 * A field value without HTTP's optional whitespace around it: SP and HTAB only (RFC 9110 §5.5). Not
 * `String.prototype.trim()`, which also strips U+00A0, U+0085 and the other Unicode spaces: Node hands
 * the obs-text byte 0xA0 over as U+00A0, so `k<0xA0>` would become `k` and share whatever `k` keys
 * (an idempotency record, a rate-limit bucket).
 */
export function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value.charCodeAt(start))) start += 1;
  while (end > start && isOws(value.charCodeAt(end - 1))) end -= 1;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
