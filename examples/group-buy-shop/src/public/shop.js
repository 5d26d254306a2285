// The storefront: join a deal, pay for it. Plain browser JavaScript, no build step.
const $ = (id) => document.getElementById(id);
const state = { config: null, order: null, idempotencyKey: null, poll: 0 };

/** How often and how long the page asks the shop about a pending payment. */
const POLL_MS = 1000;
const POLL_TRIES = 60;
const NOT_ANSWERING = 'Shop not answering: try again in a moment.';

const student = $('student');
student.value = localStorage.getItem('student') || `student-${Math.random().toString(36).slice(2, 8)}`;
// The id stands in for the session cookie: a made-up one is kept too, or a reload would make the student
// someone else, whose "join the deal again" opens a new order instead of showing theirs.
localStorage.setItem('student', student.value);
student.addEventListener('change', () => localStorage.setItem('student', student.value));

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
    item.querySelector('p:last-of-type').textContent =
      deal.status === 'completed'
        ? `Deal complete: ${deal.joined} joined`
        : `${deal.joined} of ${deal.target} joined`;
    const join = document.createElement('button');
    join.type = 'button';
    join.textContent = 'Join deal';
    join.dataset.deal = deal.id;
    join.addEventListener('click', () => joinDeal(deal));
    item.append(join);
    list.append(item);
  }
}

async function joinDeal(deal) {
  const { response, body } = await api(`/deals/${encodeURIComponent(deal.id)}/join`, {
    method: 'POST',
    body: '{}',
  });
  if (!response) return show('busy', NOT_ANSWERING);
  if (!response.ok) return show('failed', body.detail || 'Could not join the deal.');
  state.order = body.order;
  state.poll++; // stop watching another order
  // One key per checkout of this order, kept for every click of "Pay": the shop can then recognise a
  // repeated click as the same checkout. Only the floodgate shop's page does this.
  newCheckout();
  $('checkout').hidden = false;
  $('order-summary').textContent = `Order ${body.order.id} — ${deal.title}, ${euros(body.order.amount)}`;
  const status = body.order.status;
  if (status === 'pending' || status === 'paying') {
    show('pending', 'Payment pending: we will confirm it shortly. Do not pay again.');
    pollOrder(body.order.id);
  } else show('', status === 'paid' ? 'Already paid.' : '');
  await loadDeals();
}

function show(kind, text) {
  const result = $('result');
  result.className = kind;
  result.textContent = text;
}

async function pay() {
  if (!state.order) return;
  const orderId = state.order.id;
  state.poll++;
  show('pending', 'Paying…');
  const headers = state.idempotencyKey ? { 'idempotency-key': `"${state.idempotencyKey}"` } : {};
  const { response, body } = await api('/checkout', {
    method: 'POST',
    headers,
    body: JSON.stringify({ orderId, source: $('card').value }),
  });
  // The student opened another order meanwhile: this answer is not about the order the page shows (and
  // a decline must not give that order a new key).
  if (state.order?.id !== orderId) return;
  // Not answered: the click may still have reached the shop, so the next one keeps its key.
  if (!response) return show('busy', NOT_ANSWERING);
  const status = body.status;
  if (response.status === 201 || status === 'paid') return show('paid', 'Paid — thank you!');
  if (response.status === 402) {
    newCheckout();
    return show('declined', `Declined: ${body.reason || 'card declined'}. Choose another card to pay again.`);
  }
  if (response.status === 202) {
    show('pending', 'Payment pending: we will confirm it shortly. Do not pay again.');
    return pollOrder(orderId);
  }
  if (response.status === 503 || response.status === 429 || response.status === 409) {
    const seconds = Number(response.headers.get('retry-after')) || 1;
    return show('busy', `${body.detail || 'Busy.'} Try again in ${seconds} s.`);
  }
  show('failed', body.detail || `Payment failed (${response.status}).`);
}

/** Watches a pending payment until it settles; a click of "Pay" or another order stops it. */
async function pollOrder(orderId) {
  const poll = ++state.poll;
  const current = () => poll === state.poll && state.order?.id === orderId;
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
        return show(
          'declined',
          `Declined: ${body.declineReason || 'card declined'}. Choose another card to pay again.`,
        );
      case 'created':
      case 'failed':
        // Nothing was charged (a restarted shop found no payment of this order): payable again.
        newCheckout();
        return show('failed', 'The payment did not go through. You can pay again.');
      default:
        show('pending', 'Payment pending: we will confirm it shortly. Do not pay again.');
    }
  }
  show(
    'pending',
    'Still pending: we stopped checking. Do not pay again; join the deal again later to see this order.',
  );
}

$('pay').addEventListener('click', pay);

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
