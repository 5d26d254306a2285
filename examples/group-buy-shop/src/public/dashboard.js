// The live festival dashboard: polls /api/stats once a second and draws the last minute as inline SVG.
const $ = (id) => document.getElementById(id);
const NS = 'http://www.w3.org/2000/svg';

function set(id, value, bad = false) {
  const el = $(id);
  el.textContent = value ?? '–';
  el.classList.toggle('bad', bad);
}

function line(points, max, color, width = 2, dash = '') {
  const path = document.createElementNS(NS, 'polyline');
  const step = 600 / Math.max(1, points.length - 1);
  path.setAttribute(
    'points',
    points.map((v, i) => `${(i * step).toFixed(1)},${(155 - (v / max) * 145).toFixed(1)}`).join(' '),
  );
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', color);
  path.setAttribute('stroke-width', String(width));
  if (dash) path.setAttribute('stroke-dasharray', dash);
  return path;
}

function draw(stats) {
  const svg = $('chart');
  const admitted = stats.history.bankAdmitted ?? stats.history.bank;
  const { checkouts, paid } = stats.history;
  const limit = stats.bankRate || 0;
  const max = Math.max(1, limit * 1.3, ...admitted, ...checkouts, ...paid);
  svg.replaceChildren(
    line(checkouts, max, '#8a5a00'),
    line(admitted, max, '#2f6ea5'),
    line(paid, max, '#176b2c'),
    ...(limit ? [line(new Array(admitted.length).fill(limit), max, '#a3261b', 1.5, '6 4')] : []),
  );
}

/** When the numbers shown were given (`stats.at`), for the line that says they are old. */
let shownAt = null;

async function tick() {
  try {
    const response = await fetch('/api/stats');
    if (!response.ok) throw new Error(`GET /api/stats answered ${response.status}`);
    const stats = await response.json();
    $('who').textContent = `${stats.shop} shop (${stats.instance})`;
    set('checkouts', stats.perSecond.checkouts);
    set('shed', stats.perSecond.shed);
    set('bank', stats.perSecond.bank, stats.bankRate > 0 && stats.perSecond.bank > stats.bankRate * 1.05);
    set('limit', stats.bankRate || 'none set');
    set('breaker', stats.payments.breaker, stats.payments.breaker === 'open');
    set('queued', stats.payments.queued);
    set('paid', stats.orders.paid);
    set('pending', stats.orders.pending);
    set('declined', stats.orders.declined);
    set('failed', stats.orders.failed, stats.orders.failed > 0);
    set('double', stats.bank?.ordersChargedMoreThanOnce, (stats.bank?.ordersChargedMoreThanOnce ?? 0) > 0);
    set('extra', stats.bank?.extraCharges, (stats.bank?.extraCharges ?? 0) > 0);
    draw(stats);
    shownAt = stats.at;
    $('board').classList.remove('stale');
  } catch {
    // A restarting shop (the festival SIGKILLs one): the numbers stay, greyed, and say how old they are.
    $('who').textContent =
      shownAt === null
        ? 'shop not answering'
        : `shop not answering: numbers as of ${new Date(shownAt).toLocaleTimeString()}`;
    $('board').classList.add('stale');
  }
  // The next poll once this one is done: a slow answer (the bank's numbers wait up to half a second)
  // must not be overtaken by the next one's and show older numbers after newer.
  setTimeout(tick, 1000);
}

await tick();
