// Drives the running app as clients would and checks what comes back: `node scripts/smoke.mjs
// http://127.0.0.1:3000` (against `next start` or `next dev`, on a database of its own).
//
//   route handler: PUT stores versions (the answer carries the version, not the value), check-and-set
//                  conflicts, GET answers metadata only, unknown secrets and invalid names
//   page:          lists names and versions, never values
//   server action: the form posted as a browser without JavaScript posts it
//   audit trail:   the records carry the request's actor, request id, address and user agent
//                  (read with the library, when DATABASE_URL and TENANT_SECRETS_MASTER_KEY are set)
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createSecretsManager } from 'tenant-secrets';

const base = process.argv[2] ?? 'http://127.0.0.1:3000';
const tenant = `acme-${randomBytes(3).toString('hex')}`;
const name = 'stripe/api-key';
const api = (tenantId, keyName) =>
  `${base}/api/tenants/${encodeURIComponent(tenantId)}/secrets/${encodeURIComponent(keyName)}`;
const values = [`sk_live_${randomBytes(12).toString('hex')}`, `sk_live_${randomBytes(16).toString('hex')}`];
const requestId = randomUUID();
const clientHeaders = {
  'x-request-id': requestId,
  'x-forwarded-for': '203.0.113.7',
  'user-agent': 'smoke/1.0',
};

let checks = 0;
const step = (what) => {
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
};

async function call(method, url, body, headers = {}) {
  const response = await fetch(url, {
    method,
    headers: {
      ...clientHeaders,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: 'manual',
  });
  const text = await response.text();
  for (const value of values)
    assert.ok(!text.includes(value), `${method} ${url} answered with a secret value`);
  return { status: response.status, headers: response.headers, text };
}

const json = (response) => JSON.parse(response.text);

// Route handler
let response = await call('PUT', api(tenant, name), { value: values[0] });
assert.equal(response.status, 201, response.text);
assert.deepEqual(json(response), { tenant, name, version: 1 });
step('PUT creates version 1 and answers without the value');

response = await call('PUT', api(tenant, name), { value: values[1] });
assert.equal(response.status, 200, response.text);
assert.equal(json(response).version, 2);
step('PUT stores version 2');

response = await call('PUT', api(tenant, name), { value: 'never stored', ifVersion: 0 });
assert.equal(response.status, 409, response.text);
assert.equal(json(response).error, 'CONFLICT');
step('PUT with ifVersion 0 on an existing secret is a conflict');

response = await call('GET', api(tenant, name));
assert.equal(response.status, 200, response.text);
assert.deepEqual(json(response), { tenant, name, version: 2, length: values[1].length });
assert.equal(response.headers.get('cache-control'), 'no-store');
step('GET answers version and length only, not cacheable');

response = await call('GET', api(tenant, 'missing'));
assert.equal(response.status, 404, response.text);
step('GET of an unknown secret is 404');

response = await call('GET', api('not a tenant id!', name));
assert.equal(response.status, 400, response.text);
assert.equal(json(response).error, 'INVALID_INPUT');
step('GET with an invalid tenant id is 400');

response = await call('PUT', api(tenant, name), { notValue: 1 });
assert.equal(response.status, 400, response.text);
step('PUT without a string value is 400');

// Page and server action
response = await call('GET', `${base}/?tenant=${tenant}`);
assert.equal(response.status, 200, response.text.slice(0, 500));
assert.match(response.text, /stripe\/api-key/);
step('the page lists the secret by name (and no value)');

// React renders the action's id as a hidden field, so the form works before (and without) JavaScript.
const action = /name="(\$ACTION_ID_[0-9a-f]+)"/.exec(response.text)?.[1];
assert.ok(action, 'the form carries no server action id');
const form = new FormData();
form.set(action, '');
form.set('tenant', tenant);
form.set('name', 'github/token');
const formValue = `ghp_${randomBytes(18).toString('hex')}`;
values.push(formValue);
form.set('value', formValue);
const posted = await fetch(`${base}/?tenant=${tenant}`, {
  method: 'POST',
  body: form,
  headers: clientHeaders,
  redirect: 'manual',
});
const postedText = await posted.text();
assert.equal(posted.status, 303, postedText.slice(0, 500));
assert.ok(!postedText.includes(formValue) && !posted.headers.get('location')?.includes(formValue));
assert.match(posted.headers.get('location') ?? '', /saved=github%2Ftoken/);
step('the form posts to the server action, which redirects (303)');

response = await call('GET', api(tenant, 'github/token'));
assert.equal(response.status, 200, response.text);
assert.deepEqual(json(response), { tenant, name: 'github/token', version: 1, length: formValue.length });
step('the secret stored by the server action reads back as version 1');

// Audit trail
if (process.env.DATABASE_URL && process.env.TENANT_SECRETS_MASTER_KEY) {
  const secrets = createSecretsManager({ actor: 'smoke' });
  try {
    const { records } = await secrets.auditTrail.query(tenant, { limit: 100 });
    const fromRequests = records.filter((record) => record.requestId === requestId);
    assert.ok(fromRequests.length > 0, 'no audit record carries the request id');
    for (const record of fromRequests) {
      assert.equal(record.actor, 'user:demo');
      assert.equal(record.context?.ip, '203.0.113.7');
      assert.equal(record.context?.user_agent, 'smoke/1.0');
    }
    const actions = new Set(fromRequests.map((record) => `${record.action}:${record.outcome}`));
    for (const expected of ['secret.created:success', 'secret.updated:success', 'secret.read:success']) {
      assert.ok(actions.has(expected), `no ${expected} record among ${[...actions].join(', ')}`);
    }
    step(
      `${fromRequests.length} audit records carry the request's actor, request id, address and user agent`,
    );
  } finally {
    await secrets.close();
  }
}

console.log(`${checks} passed, 0 failed`);
