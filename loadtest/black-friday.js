// Black Friday: shoppers fill carts at ten times a normal day's rate while checkouts ramp up,
// and every order must end confirmed (or out of stock) — none lost, none doubled.
//
//   k6 run loadtest/black-friday.js                       # through the gateway on :8080
//   CART_URL=http://127.0.0.1:8081 ORDERS_URL=http://127.0.0.1:8082 k6 run loadtest/black-friday.js
//   SCALE=2 k6 run loadtest/black-friday.js               # twice the traffic
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const CART_URL = __ENV.CART_URL || __ENV.BASE_URL || 'http://127.0.0.1:8080';
const ORDERS_URL = __ENV.ORDERS_URL || __ENV.BASE_URL || 'http://127.0.0.1:8080';
const SCALE = Number(__ENV.SCALE || 1);
const SKUS = ['TSHIRT-BLACK-M', 'TSHIRT-WHITE-L', 'HOODIE-GREY-M', 'MUG-LOGO', 'SOCKS-3PACK', 'CAP-NAVY'];
const JSON_HEADERS = { 'content-type': 'application/json' };

const confirmed = new Counter('orders_confirmed');
const notConfirmed = new Counter('orders_not_confirmed');
const acceptToFinal = new Trend('order_accept_to_final_ms', true);

export const options = {
  scenarios: {
    browsing: {
      executor: 'constant-arrival-rate',
      exec: 'browse',
      rate: 200 * SCALE,
      timeUnit: '1s',
      duration: '60s',
      preAllocatedVUs: 50,
      maxVUs: 400,
    },
    checkout: {
      executor: 'ramping-arrival-rate',
      exec: 'checkout',
      startRate: 5 * SCALE,
      timeUnit: '1s',
      stages: [
        { target: 50 * SCALE, duration: '20s' },
        { target: 50 * SCALE, duration: '30s' },
        { target: 0, duration: '10s' },
      ],
      preAllocatedVUs: 50,
      maxVUs: 400,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{name:cart}': ['p(99)<50'],
    'http_req_duration{name:checkout}': ['p(99)<100'],
    order_accept_to_final_ms: ['p(99)<2000'],
  },
};

function newCart() {
  const res = http.post(`${CART_URL}/v1/carts`, JSON.stringify({ currency: 'USD' }), {
    headers: JSON_HEADERS,
    tags: { name: 'cart' },
  });
  check(res, { 'cart created': (r) => r.status === 201 });
  return res.status === 201 ? res.json('id') : null;
}

function addItem(cart) {
  const sku = SKUS[Math.floor(Math.random() * SKUS.length)];
  const res = http.post(`${CART_URL}/v1/carts/${cart}/items`, JSON.stringify({ sku, quantity: 1 }), {
    headers: JSON_HEADERS,
    tags: { name: 'cart' },
  });
  check(res, { 'item added': (r) => r.status === 200 });
}

export function browse() {
  const cart = newCart();
  if (!cart) return;
  for (let i = 0; i < 3; i++) addItem(cart);
  const res = http.get(`${CART_URL}/v1/carts/${cart}`, { tags: { name: 'cart' } });
  check(res, { 'cart read': (r) => r.status === 200 && r.json('item_count') === 3 });
}

export function checkout() {
  const cart = newCart();
  if (!cart) return;
  addItem(cart);
  const key = `bf-${__VU}-${__ITER}-${Date.now()}`;
  const body = JSON.stringify({ cart_id: cart, email: 'shopper@example.com', payment_method: 'pm_card_visa' });
  const accepted = Date.now();
  const res = http.post(`${ORDERS_URL}/v1/orders`, body, {
    headers: Object.assign({ 'idempotency-key': key }, JSON_HEADERS),
    tags: { name: 'checkout' },
  });
  if (!check(res, { 'order accepted': (r) => r.status === 202 })) return;
  const id = res.json('id');
  // A client retry with the same key must give back the same order.
  const replay = http.post(`${ORDERS_URL}/v1/orders`, body, {
    headers: Object.assign({ 'idempotency-key': key }, JSON_HEADERS),
    tags: { name: 'checkout' },
  });
  check(replay, { 'replay is the same order': (r) => r.status === 202 && r.json('id') === id });
  for (let i = 0; i < 100; i++) {
    const order = http.get(`${ORDERS_URL}/v1/orders/${id}`, { tags: { name: 'order' } });
    const status = order.status === 200 ? order.json('status') : '';
    if (['confirmed', 'failed', 'cancelled'].includes(status)) {
      acceptToFinal.add(Date.now() - accepted);
      if (status === 'confirmed') confirmed.add(1);
      else notConfirmed.add(1);
      check(order, { 'order confirmed': () => status === 'confirmed' });
      return;
    }
    sleep(0.1);
  }
  notConfirmed.add(1);
  check(null, { 'order reached a final state': () => false });
}
