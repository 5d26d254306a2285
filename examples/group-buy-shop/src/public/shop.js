// The storefront: join a deal, pay for it. Plain browser JavaScript, no build step.
const $ = (id) => document.getElementById(id);
const state = { config: null, order: null, idempotencyKey: null };

const student = $('student');
student.value = localStorage.getItem('student') || `student-${Math.random().toString(36).slice(2, 8)}`;
student.addEventListener('change', () => localStorage.setItem('student', student.value));

async function api(path, init = {}) {
  const headers = {
    'content-type': 'application/json',
    'x-student-id': student.value,
    ...(init.headers || {}),
  };
  const response = await fetch(`/api${path}`, { ...init, headers });
  const body = await response.json().catch(() => ({}));
  return { response, body };
}

function euros(cents) {
  return (cents / 100).toLocaleString(undefined, { style: 'currency', currency: 'EUR' });
}

async function loadDeals() {
  const { body: deals } = await api('/deals');
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
  if (!response.ok) return show('failed', body.detail || 'Could not join the deal.');
  state.order = body.order;
  // One key per order, kept for every click of "Pay" on this order: the shop can then recognise a
  // repeated click as the same checkout. Only the floodgate shop's page does this.
  state.idempotencyKey = state.config.sendsIdempotencyKey ? crypto.randomUUID() : null;
  $('checkout').hidden = false;
  $('order-summary').textContent = `Order ${body.order.id} — ${deal.title}, ${euros(body.order.amount)}`;
  show('', body.order.status === 'paid' ? 'Already paid.' : '');
  await loadDeals();
}

function show(kind, text) {
  const result = $('result');
  result.className = kind;
  result.textContent = text;
}

async function pay() {
  if (!state.order) return;
  show('pending', 'Paying…');
  const headers = state.idempotencyKey ? { 'idempotency-key': `"${state.idempotencyKey}"` } : {};
  const { response, body } = await api('/checkout', {
    method: 'POST',
    headers,
    body: JSON.stringify({ orderId: state.order.id, source: $('card').value }),
  });
  const status = body.status;
  if (response.status === 201 || status === 'paid') return show('paid', 'Paid — thank you!');
  if (response.status === 402) return show('declined', `Declined: ${body.reason || 'card declined'}.`);
  if (response.status === 202) {
    show('pending', 'Payment pending: we will confirm it shortly. Do not pay again.');
    return pollOrder(state.order.id);
  }
  if (response.status === 503 || response.status === 429 || response.status === 409) {
    const seconds = Number(response.headers.get('retry-after')) || 1;
    return show('busy', `${body.detail || 'Busy.'} Try again in ${seconds} s.`);
  }
  show('failed', body.detail || `Payment failed (${response.status}).`);
}

async function pollOrder(orderId) {
  for (let i = 0; i < 60; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const { body } = await api(`/orders/${encodeURIComponent(orderId)}`);
    if (body.status === 'paid') return show('paid', 'Paid — thank you!');
    if (body.status === 'declined')
      return show('declined', `Declined: ${body.declineReason || 'card declined'}.`);
  }
}

$('pay').addEventListener('click', pay);

const { body: config } = await api('/config');
state.config = config;
$('shop-kind').textContent = `${config.shop} shop`;
await loadDeals();
