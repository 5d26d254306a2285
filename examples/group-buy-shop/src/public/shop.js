// The storefront: join a deal, pay for it. Plain browser JavaScript, no build step.
const $ = (id) => document.getElementById(id);
/**
 * `step` goes up with everything the checkout starts (a click, a join): a countdown or a watch of an older
 * one stops. `paying` is the order whose click of "Pay" is on its way, if any.
 */
const state = { config: null, order: null, idempotencyKey: null, step: 0, paying: null };

/** How often and how long the page asks the shop about a pending payment. */
const POLL_MS = 1000;
const POLL_TRIES = 60;
/**
 * A checkout the shop has not answered by then is treated as not answered (its key is kept). The shop
 * answers within its payment deadline (8 s) plus the time a repeated click is held (15 s).
 */
const CHECKOUT_TIMEOUT_MS = 30_000;
const NOT_ANSWERING = 'Shop not answering: try again in a moment.';
const PENDING = 'Payment pending: waiting for the bank, whose answer will show here. Do not pay again.';
const STUDENT_HINT = 'Student ID: 1-64 letters, digits, ".", "_" or "-".';

const student = $('student');
student.value = localStorage.getItem('student') || `student-${Math.random().toString(36).slice(2, 8)}`;
// The id stands in for the session cookie: a made-up one is kept too, or a reload would make the student
// someone else, whose "join the deal again" opens a new order instead of showing theirs.
localStorage.setItem('student', student.value);
student.addEventListener('change', () => {
  // Another student: the order on the page is not theirs (paying it would be answered "You have no order").
  closeCheckout();
  if (!student.checkValidity()) return notice('failed', STUDENT_HINT);
  notice('', '');
  localStorage.setItem('student', student.value);
});

async function api(path, init = {}) {
  const headers = {
    'content-type': 'application/json',
    'x-student-id': student.value,
    ...(init.headers || {}),
  };
  let response;
  try {
    response = await fetch(`/api${path}`, { ...init, headers });
  } catch {
    // The shop is down or restarting (the festival SIGKILLs it), or the network went away.
    return { response: null, body: {} };
  }
  const body = await response.json().catch(() => ({}));
  return { response, body };
}

/**
 * The next click of "Pay" starts a new checkout, with a new Idempotency-Key: after the bank declined (the
 * student may choose another card) and when the order is payable again. Until then every click sends the
 * same key, so the shop recognises a repeated click as the same checkout.
 */
function newCheckout() {
  state.idempotencyKey = state.config?.sendsIdempotencyKey ? crypto.randomUUID() : null;
}

function euros(cents) {
  return (cents / 100).toLocaleString(undefined, { style: 'currency', currency: 'EUR' });
}

/** The bank's decline code (`insufficient_funds`) as a student reads it. */
function declineText(reason) {
  if (!reason) return 'the card was declined';
  if (reason === 'insufficient_funds') return 'not enough funds on this card';
  return reason.replaceAll('_', ' ');
}

function declined(reason, lead = 'Declined') {
  return `${lead}: ${declineText(reason)}. Nothing was charged. Choose another card and pay again.`;
}

/** When the shop says the next attempt may come: `Retry-After` in seconds or as an HTTP date; at least 1 s. */
function retryAfterSeconds(response) {
  const value = response.headers.get('retry-after')?.trim() ?? '';
  if (/^\d+$/.test(value)) return Math.max(1, Number(value));
  const at = Date.parse(value);
  return Number.isNaN(at) ? 1 : Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

async function loadDeals() {
  const { response, body: deals } = await api('/deals');
  if (!response?.ok) return; // keep the list the page shows
  const list = $('deals');
  list.replaceChildren();
  for (const deal of deals) {
    const item = document.createElement('li');
    item.innerHTML = `<strong></strong><p class="muted"></p><progress></progress><p></p>`;
    item.querySelector('strong').textContent = deal.title;
    item.querySelector('.muted').textContent = `${euros(deal.priceCents)} each`;
    const progress = item.querySelector('progress');
    progress.max = deal.target;
    progress.value = Math.min(deal.joined, deal.target);
    progress.setAttribute('aria-label', `${deal.title}: ${deal.joined} of ${deal.target} joined`);
    item.querySelector('p:last-of-type').textContent =
      deal.status === 'completed'
        ? `Deal complete: ${deal.joined} joined`
        : `${deal.joined} of ${deal.target} joined`;
    const join = document.createElement('button');
    join.type = 'button';
    join.textContent = 'Join deal';
    // Three buttons read "Join deal": the name says which.
    join.setAttribute('aria-label', `Join deal: ${deal.title}`);
    join.dataset.deal = deal.id;
    join.addEventListener('click', () => joinDeal(deal));
    item.append(join);
    list.append(item);
  }
}

async function joinDeal(deal) {
  if (!student.checkValidity()) return notice('failed', STUDENT_HINT);
  const { response, body } = await api(`/deals/${encodeURIComponent(deal.id)}/join`, {
    method: 'POST',
    body: '{}',
  });
  // Said above the deals: the checkout, where the student would otherwise look, is not open yet.
  if (!response) return notice('failed', NOT_ANSWERING);
  if (response.status === 401) return notice('failed', STUDENT_HINT);
  if (!response.ok) return notice('failed', body.detail || 'Could not join the deal.');
  notice('', '');
  const { order } = body;
  // One key per checkout of this order, kept for every click of "Pay" (joining the same order again
  // too): the shop can then recognise a repeated click as the same checkout. Only the floodgate shop's
  // page sends one.
  if (state.order?.id !== order.id || !state.idempotencyKey) newCheckout();
  state.order = order;
  const step = ++state.step;
  $('checkout').hidden = false;
  $('order-summary').textContent = `Order ${order.id} — ${deal.title}, ${euros(order.amount)}`;
  // This order's click of "Pay" is still on its way (the shop may not have it yet: the order says
  // `created`): its answer will show, and "Pay" stays locked until then.
  const status = state.paying === order.id ? 'clicked' : order.status;
  switch (status) {
    case 'clicked':
      allow('none');
      show('pending', 'Paying…');
      break;
    case 'paid':
      allow('none');
      show('paid', 'Already paid.');
      break;
    case 'pending':
    case 'paying':
      watchOrder(order.id, step, PENDING);
      break;
    case 'declined':
      allow('pay');
      show('declined', declined(order.declineReason, 'The last payment was declined'));
      break;
    case 'failed':
      allow('pay');
      show('failed', 'The last payment did not go through. You can pay again.');
      break;
    default:
      allow('pay');
      show('', '');
  }
  // The deal's button the student pressed is about to be redrawn, and on a phone the checkout is below
  // the deals: focus (and the view) move to it, so Tab goes on to the card and "Pay".
  $('checkout-title').focus({ preventScroll: true });
  $('checkout').scrollIntoView({ block: 'nearest' });
  await loadDeals();
}

function closeCheckout() {
  state.order = null;
  state.step++;
  $('checkout').hidden = true;
  show('', '');
}

function show(kind, text) {
  const result = $('result');
  result.className = kind;
  result.textContent = text;
}

function notice(kind, text) {
  const element = $('notice');
  element.className = kind;
  element.textContent = text;
}

/**
 * What the student may do in the checkout: `pay` (choose a card and pay), `wait` (choose a card; "Pay"
 * comes back when the shop said it may), or `none` (a payment is under way or done). "Pay" is marked
 * `aria-disabled` rather than `disabled`, so a keyboard user's focus stays on it.
 */
function allow(what) {
  $('pay').setAttribute('aria-disabled', String(what !== 'pay'));
  $('card').disabled = what === 'none';
}

const payAllowed = () => $('pay').getAttribute('aria-disabled') !== 'true';

async function pay(event) {
  event.preventDefault();
  // A second click of a double click, or a click while the payment is pending: nothing to send.
  if (!state.order || !payAllowed()) return;
  const orderId = state.order.id;
  state.paying = orderId;
  state.step++;
  allow('none');
  show('pending', 'Paying…');
  const headers = state.idempotencyKey ? { 'idempotency-key': `"${state.idempotencyKey}"` } : {};
  const { response, body } = await api('/checkout', {
    method: 'POST',
    headers,
    body: JSON.stringify({ orderId, source: $('card').value }),
    signal: AbortSignal.timeout(CHECKOUT_TIMEOUT_MS),
  });
  if (state.paying === orderId) state.paying = null;
  // The student opened another order meanwhile: this answer is not about the order the page shows (and a
  // decline must not give that order a new key).
  if (state.order?.id !== orderId) return;
  const step = ++state.step;
  if (!response) {
    // Not answered: the click may still have reached the shop, so the next one keeps its key.
    allow('pay');
    return show('busy', NOT_ANSWERING);
  }
  const code = response.status;
  if (code === 201 || body.status === 'paid') {
    allow('none');
    return show('paid', 'Paid — thank you!');
  }
  if (code === 402) {
    newCheckout();
    allow('pay');
    return show('declined', declined(body.reason));
  }
  if (code === 202) return watchOrder(orderId, step, PENDING);
  if (code === 409 || code === 422) {
    // Another payment of this order is under way or done: the same key still in flight (409), another
    // card in another tab or after an unanswered click (409 ERR_PAYMENT_MISMATCH, 422 the key reused
    // with another card). Paying again would not help; its outcome is the order's.
    return watchOrder(
      orderId,
      step,
      'Another payment of this order is under way: waiting for its result. Do not pay again.',
    );
  }
  if (code === 503 || code === 429) {
    const why =
      code === 503
        ? 'The shop is busy; nothing was charged.'
        : 'Too many attempts in a short time; nothing was charged.';
    return waitToPay(step, why, retryAfterSeconds(response));
  }
  allow('pay');
  show('failed', body.detail || `Payment failed (${code}).`);
}

/** Honours `Retry-After`: "Pay" comes back once the shop said it may, counting down meanwhile. */
async function waitToPay(step, why, seconds) {
  allow('wait');
  for (let left = seconds; left > 0; left--) {
    show('busy', `${why} You can pay again in ${left} s.`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (step !== state.step) return;
  }
  allow('pay');
  show('busy', `${why} You can pay again now.`);
}

/** Watches a payment under way until it settles; another order (or the same one joined again) stops it. */
async function watchOrder(orderId, step, text) {
  allow('none');
  show('pending', text);
  const current = () => step === state.step && state.order?.id === orderId;
  for (let i = 0; i < POLL_TRIES; i++) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (!current()) return;
    const { response, body } = await api(`/orders/${encodeURIComponent(orderId)}`);
    if (!current()) return;
    if (!response?.ok) {
      // Down or restarting: keep asking; a restarted shop brings the order in line with its payment.
      show('pending', 'Payment pending. Shop not answering; still checking. Do not pay again.');
      continue;
    }
    switch (body.status) {
      case 'paid':
        return show('paid', 'Paid — thank you!');
      case 'declined':
        newCheckout();
        allow('pay');
        return show('declined', declined(body.declineReason));
      case 'created':
      case 'failed':
        // Nothing was charged (a restarted shop found no payment of this order): payable again.
        newCheckout();
        allow('pay');
        return show('failed', 'The payment did not go through. You can pay again.');
      default:
        show('pending', text);
    }
  }
  show(
    'pending',
    'Still pending: we stopped checking. Do not pay again; join the deal again later to see this order.',
  );
}

$('pay-form').addEventListener('submit', pay);

async function start() {
  const { response, body: config } = await api('/config');
  if (!response?.ok) {
    $('shop-kind').textContent = 'shop not answering';
    setTimeout(start, 2000);
    return;
  }
  state.config = config;
  // Which framework serves it: the same page and API run on the Express and the Fastify shop.
  const framework = { express: 'Express', fastify: 'Fastify' }[config.framework] ?? config.framework;
  $('shop-kind').textContent = `${config.shop} shop on ${framework}`;
  await loadDeals();
}

await start();
