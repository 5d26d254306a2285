// The storefront: join a deal, pay for it. Plain browser JavaScript, no build step.
const $ = (id) => document.getElementById(id);
/**
 * `step` goes up with everything the checkout starts (a click, a join): a countdown or a watch of an older
 * one stops. `paying` is the order whose click of "Pay" is on its way, if any. `deals` is the list last
 * shown, which names the deal of a checkout shown again after a reload.
 */
const state = { config: null, deals: [], order: null, step: 0, paying: null };

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
  // Back to an id with a checkout in progress: it shows again, as after a reload.
  if (state.config) resumeCheckout();
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
 * A checkout in progress is kept in localStorage as `checkout:<student>:<order id>`, its value the
 * Idempotency-Key every click of "Pay" for the order sends, from the first click until the answer is final.
 * Kept in memory only, the key went with a reload: "Pay" after it started another checkout, which the shop
 * could not tell from the click that was still on its way or whose answer was lost. localStorage, not
 * sessionStorage: the checkout is the student's order's, not a tab's, as the student id kept beside it is;
 * a tab closed and opened again, or a second tab, goes on with it too. A student has one order per deal,
 * and a final answer removes the entry, so there are never more than that.
 */
const CHECKOUT_ITEM = 'checkout:';
const checkoutItem = (order) => `${CHECKOUT_ITEM}${order.studentId}:${order.id}`;

/** The key of the order's checkout in progress; the first click of "Pay" starts one. */
function checkoutKey(order) {
  // Only the floodgate shop's page sends one.
  if (!state.config?.sendsIdempotencyKey) return null;
  const item = checkoutItem(order);
  const kept = localStorage.getItem(item);
  if (kept) return kept;
  const key = crypto.randomUUID();
  localStorage.setItem(item, key);
  return key;
}

/**
 * The checkout is over: the next click of "Pay" starts a new one, with a new key. After the order was paid,
 * after the bank declined (the student may choose another card), after a refusal that started nothing, and
 * when the shop says the order is payable again.
 */
function endCheckout(order) {
  localStorage.removeItem(checkoutItem(order));
}

/** The ids of the student's orders with a checkout in progress (a student id holds no `:`). */
function checkoutsInProgress(studentId) {
  const prefix = `${CHECKOUT_ITEM}${studentId}:`;
  return Object.keys(localStorage)
    .filter((name) => name.startsWith(prefix))
    .map((name) => name.slice(prefix.length));
}

/**
 * Whether the answer to a click of "Pay" ends its checkout: paid, declined, or a 4xx that started nothing.
 * Not a 409 or 422 (a payment of the order is under way or done: the page watches it) nor a 429 ("later").
 */
function endsCheckout(code, body) {
  if (code === 201 || code === 402 || body.status === 'paid') return true;
  return code >= 400 && code < 500 && code !== 409 && code !== 422 && code !== 429;
}

/**
 * The order this tab shows, so that a reload shows it again, as the shop has it then. sessionStorage: it is
 * this tab's view (another tab may show another order), and it goes with the tab.
 */
const SHOWN_ITEM = 'checkout-shown';

function rememberShown(order) {
  sessionStorage.setItem(SHOWN_ITEM, JSON.stringify({ studentId: order.studentId, orderId: order.id }));
}

function shownOrderOf(studentId) {
  try {
    const shown = JSON.parse(sessionStorage.getItem(SHOWN_ITEM) ?? 'null');
    return shown?.studentId === studentId && typeof shown.orderId === 'string' ? shown.orderId : null;
  } catch {
    return null;
  }
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
  state.deals = deals;
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
  // Joining the same order again keeps its checkout in progress, and so its key.
  openCheckout(body.order, deal.title);
  // The deal's button the student pressed is about to be redrawn, and on a phone the checkout is below
  // the deals: focus (and the view) move to it, so Tab goes on to the card and "Pay".
  $('checkout-title').focus({ preventScroll: true });
  $('checkout').scrollIntoView({ block: 'nearest' });
  await loadDeals();
}

/**
 * Shows the order's checkout as the shop has it: "Pay" for an order that can be paid, a watch of one being
 * paid, "Already paid" for a paid one.
 */
function openCheckout(order, title) {
  state.order = order;
  const step = ++state.step;
  rememberShown(order);
  $('checkout').hidden = false;
  $('order-summary').textContent = `Order ${order.id} — ${title}, ${euros(order.amount)}`;
  // This order's click of "Pay" is still on its way (the shop may not have it yet: the order says
  // `created`): its answer will show, and "Pay" stays locked until then.
  const status = state.paying === order.id ? 'clicked' : order.status;
  switch (status) {
    case 'clicked':
      allow('none');
      show('pending', 'Paying…');
      break;
    case 'paid':
      endCheckout(order);
      allow('none');
      show('paid', 'Already paid.');
      break;
    case 'pending':
    case 'paying':
      watchOrder(order, step, PENDING);
      break;
    case 'declined':
      endCheckout(order);
      allow('pay');
      show('declined', declined(order.declineReason, 'The last payment was declined'));
      break;
    case 'failed':
      allow('pay');
      show('failed', 'The last payment did not go through. You can pay again.');
      break;
    default:
      allow('pay');
      // A click before a reload that the shop has not seen (yet), or turned away busy: paying again sends
      // its key, so a click still on its way and this one are one checkout.
      show(
        '',
        localStorage.getItem(checkoutItem(order))
          ? 'Not paid yet. "Pay" goes on with the checkout you started, so nothing is paid twice.'
          : '',
      );
  }
}

/**
 * Shows the student's checkout again after a reload (or in a new tab, or back to this student id): the
 * order this tab showed, or else one with a checkout in progress, as the shop has it now. Every order with
 * a checkout in progress is asked about, so that the entries of those that ended meanwhile (the bank
 * settled a pending payment) go.
 */
async function resumeCheckout() {
  if (!student.checkValidity()) return;
  const studentId = student.value;
  const shown = shownOrderOf(studentId);
  const orderIds = new Set([...(shown ? [shown] : []), ...checkoutsInProgress(studentId)]);
  let step = state.step;
  for (const orderId of orderIds) {
    const { response, body: order } = await api(`/orders/${encodeURIComponent(orderId)}`);
    // The student joined a deal or changed id meanwhile: what they did since comes first.
    if (step !== state.step) return;
    if (response?.status === 404) {
      // Not (or no longer) this student's order: a shop started on a fresh database. Nothing to go on with.
      endCheckout({ studentId, id: orderId });
      if (orderId === shown) sessionStorage.removeItem(SHOWN_ITEM);
      continue;
    }
    // Not answering: everything stays for the next load.
    if (!response?.ok) continue;
    if (!state.order) {
      openCheckout(order, state.deals.find((deal) => deal.id === order.dealId)?.title ?? order.dealId);
      step = state.step;
    } else if (order.status === 'paid' || order.status === 'declined') {
      endCheckout(order);
    }
  }
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
  const order = state.order;
  const orderId = order.id;
  state.paying = orderId;
  state.step++;
  allow('none');
  show('pending', 'Paying…');
  const key = checkoutKey(order);
  const headers = key ? { 'idempotency-key': `"${key}"` } : {};
  const { response, body } = await api('/checkout', {
    method: 'POST',
    headers,
    body: JSON.stringify({ orderId, source: $('card').value }),
    signal: AbortSignal.timeout(CHECKOUT_TIMEOUT_MS),
  });
  if (state.paying === orderId) state.paying = null;
  // Whether the checkout is over does not depend on which order the page shows now.
  if (response && endsCheckout(response.status, body)) endCheckout(order);
  // The student opened another order meanwhile: this answer is not about the order the page shows.
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
    allow('pay');
    return show('declined', declined(body.reason));
  }
  if (code === 202) return watchOrder(order, step, PENDING);
  if (code === 409 || code === 422) {
    // Another payment of this order is under way or done: the same key still in flight (409), another
    // card in another tab or after an unanswered click (409 ERR_PAYMENT_MISMATCH, 422 the key reused
    // with another card). Paying again would not help; its outcome is the order's.
    return watchOrder(
      order,
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
async function watchOrder(order, step, text) {
  const orderId = order.id;
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
        endCheckout(order);
        return show('paid', 'Paid — thank you!');
      case 'declined':
        endCheckout(order);
        allow('pay');
        return show('declined', declined(body.declineReason));
      case 'created':
      case 'failed':
        // Nothing was charged (a restarted shop found no payment of this order): payable again.
        endCheckout(order);
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
  await resumeCheckout();
}

await start();
