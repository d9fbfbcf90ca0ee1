// REST broadcast: batch and single endpoints reaching socket clients of both
// serializers, realtime-js httpSend and send() fallback, and REST errors.

import { test } from '../../lib/harness.mjs'
import { config } from '../../lib/config.mjs'
import { expectMatch, expectTrue, expectEqual } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox } from '../../lib/rt.mjs'
import { RawClient, httpRequest } from '../../lib/wire.mjs'
import { token, expiredToken, sign } from '../../lib/jwt.mjs'
import { uniq, bytes } from '../common.mjs'

const JSON_CT = { 'Content-Type': 'application/json' }

function post(path, body, headers = {}, opts = {}) {
  return httpRequest({ method: 'POST', path, body, headers: { ...JSON_CT, ...headers }, ...opts })
}

async function twoListeners(ctx, sub) {
  const topic = `realtime:${sub}`
  const v2 = await RawClient.connect({ ctx, label: 'raw-v2' })
  const v1 = await RawClient.connect({ ctx, vsn: '1.0.0', label: 'raw-v1' })
  await v2.join(topic)
  await v1.join(topic)
  return { topic, v2, v1 }
}

function expect202(res, what) {
  expectMatch({ status: res.status, body: res.body }, { status: 202, body: '' }, what)
}

test('POST /api/broadcast (apikey header) reaches v2 and v1 sockets as JSON broadcasts', async (ctx) => {
  const sub = uniq('rest')
  const { topic, v2, v1 } = await twoListeners(ctx, sub)
  const res = await post('/api/broadcast', { messages: [{ topic: sub, event: 'rest-ev', payload: { a: 1, s: 'ü' } }] }, { apikey: token() })
  expect202(res, 'batch response')
  const p = { payload: { a: 1, s: 'ü' }, event: 'rest-ev', type: 'broadcast' }
  await v2.waitForFrame([null, null, topic, 'broadcast', p], { what: 'v2 text broadcast' })
  await v1.waitForFrame({ topic, event: 'broadcast', payload: p, ref: null }, { what: 'v1 broadcast' })
})

test('POST /api/broadcast: several messages, several topics, optional id becomes meta.id', async (ctx) => {
  const s1 = uniq('multi')
  const s2 = uniq('multi')
  const a = await RawClient.connect({ ctx, label: 'a' })
  const b = await RawClient.connect({ ctx, label: 'b' })
  await a.join(`realtime:${s1}`)
  await b.join(`realtime:${s2}`)
  const id = '3d9c2f6e-8b0a-4c1e-9a57-1b2c3d4e5f60'
  const res = await post(
    '/api/broadcast',
    {
      messages: [
        { topic: s1, event: 'one', payload: { n: 1 } },
        { topic: s2, event: 'two', payload: { n: 2 }, id },
        { topic: s1, event: 'three', payload: { n: 3 }, private: false },
      ],
    },
    { Authorization: `Bearer ${token()}` }
  )
  expect202(res, 'batch response')
  await a.waitForFrame([null, null, `realtime:${s1}`, 'broadcast', { payload: { n: 1 }, event: 'one', type: 'broadcast' }])
  await a.waitForFrame([null, null, `realtime:${s1}`, 'broadcast', { payload: { n: 3 }, event: 'three', type: 'broadcast' }])
  await b.waitForFrame([null, null, `realtime:${s2}`, 'broadcast', { payload: { n: 2 }, event: 'two', type: 'broadcast', meta: { id } }])
  await b.expectNone((m) => m.payload?.event === 'one' || m.payload?.event === 'three', 100, 'message for another topic')
})

test('POST /api/broadcast: Bearer (any case) auth, extra query params ignored', async (ctx) => {
  const sub = uniq('bearer')
  const { topic, v2 } = await twoListeners(ctx, sub)
  const r1 = await post(`/api/broadcast?apikey=${token()}&vsn=2.0.0`, { messages: [{ topic: sub, event: 'b1', payload: {} }] }, { authorization: `bearer ${token()}` })
  expect202(r1, 'lowercase bearer + query string')
  const r2 = await post('/api/broadcast', { messages: [{ topic: sub, event: 'b2', payload: {} }] }, { Authorization: `BEARER ${token()}` })
  expect202(r2, 'uppercase BEARER')
  await v2.waitForFrame([null, null, topic, 'broadcast', { payload: {}, event: 'b1', type: 'broadcast' }])
  await v2.waitForFrame([null, null, topic, 'broadcast', { payload: {}, event: 'b2', type: 'broadcast' }])
})

test('POST /api/broadcast: 401 {"message":"Unauthorized"} without or with a bad token', async () => {
  const body = { messages: [{ topic: 'x', event: 'e', payload: {} }] }
  const cases = {
    'no credentials': {},
    'bad signature': { apikey: token({}, { secret: 'wrong-secret-wrong-secret-wrong-secret!!' }) },
    expired: { apikey: expiredToken() },
    'missing role': { apikey: token({ role: undefined }) },
    'missing exp': { apikey: sign({ role: 'anon' }) },
    malformed: { apikey: 'not-a-jwt' },
    'bad bearer': { Authorization: 'Bearer garbage.garbage.garbage' },
  }
  for (const [name, headers] of Object.entries(cases)) {
    const res = await post('/api/broadcast', body, headers)
    expectMatch({ status: res.status, json: res.json }, { status: 401, json: { message: 'Unauthorized' } }, `batch, ${name}`)
  }
})

test('POST /api/broadcast: unknown tenant (Host) is 401 {"message":"Tenant not found in database"}', async () => {
  const res = await post('/api/broadcast', { messages: [{ topic: 'x', event: 'e', payload: {} }] }, { apikey: token() }, { host: 'nosuchtenant.example.test' })
  expectMatch({ status: res.status, json: res.json }, { status: 401, json: { message: 'Tenant not found in database' } }, 'unknown tenant')
})

test('POST /api/broadcast: invalid messages are 422 {"errors":...}', async () => {
  const bad = {
    'missing event': { messages: [{ topic: 'x', payload: {} }] },
    'missing topic': { messages: [{ event: 'e', payload: {} }] },
    'missing payload': { messages: [{ topic: 'x', event: 'e' }] },
    'payload not an object': { messages: [{ topic: 'x', event: 'e', payload: 'str' }] },
  }
  for (const [name, body] of Object.entries(bad)) {
    const res = await post('/api/broadcast', body, { apikey: token() })
    expectTrue(res.status === 422, `${name}: status ${res.status}, body ${res.body}`)
    expectTrue(res.json && typeof res.json.errors === 'object', `${name}: body has no "errors" object: ${res.body}`)
  }
})

test('POST /api/broadcast/:topic/events/:event (JSON) reaches v2 as kind 4 and v1 as JSON', async (ctx) => {
  const sub = uniq('single')
  const { topic, v2, v1 } = await twoListeners(ctx, sub)
  const res = await post(`/api/broadcast/${sub}/events/single-ev`, { x: [1, 2], y: 'z' }, { apikey: token() })
  expect202(res, 'single JSON response')
  const m = await v2.waitFor((x) => x.binary && x.bin === 4, { what: 'kind 4 on v2' })
  expectMatch(
    { topic: m.topic, userEvent: m.userEvent, metadata: m.metadata, encoding: m.encoding, payload: JSON.parse(m.payload.toString()) },
    { topic, userEvent: 'single-ev', metadata: '', encoding: 1, payload: { x: [1, 2], y: 'z' } },
    'kind 4 frame'
  )
  await v1.waitForFrame({ topic, event: 'broadcast', payload: { event: 'single-ev', payload: { x: [1, 2], y: 'z' }, type: 'broadcast' }, ref: null })
})

test('POST /api/broadcast/:topic/events/:event: content types (json with params, none, octet-stream)', async (ctx) => {
  const sub = uniq('ctype')
  const { topic, v2, v1 } = await twoListeners(ctx, sub)
  const r1 = await post(`/api/broadcast/${sub}/events/with-params`, { p: 1 }, { apikey: token(), 'Content-Type': 'application/json; charset=utf-8' })
  expect202(r1, 'application/json; charset=utf-8')
  await v2.waitFor((x) => x.binary && x.bin === 4 && x.userEvent === 'with-params', { what: 'with-params' })
  const r2 = await httpRequest({ method: 'POST', path: `/api/broadcast/${sub}/events/no-ctype`, body: '{"q":2}', headers: { apikey: token() } })
  expect202(r2, 'no content type')
  await v2.waitFor((x) => x.binary && x.bin === 4 && x.userEvent === 'no-ctype', { what: 'no-ctype' })
  const data = Buffer.from(bytes(300))
  const r3 = await httpRequest({
    method: 'POST',
    path: `/api/broadcast/${sub}/events/octets`,
    body: data,
    headers: { apikey: token(), 'Content-Type': 'application/octet-stream' },
  })
  expect202(r3, 'octet-stream')
  const m = await v2.waitFor((x) => x.binary && x.bin === 4 && x.userEvent === 'octets', { what: 'octets' })
  expectMatch({ topic: m.topic, encoding: m.encoding, metadata: m.metadata }, { topic, encoding: 0, metadata: '' }, 'binary kind 4')
  expectTrue(m.payload.equals(data), 'octet-stream payload bytes differ')
  // v1 never gets the binary one; a JSON fence proves it had the chance.
  await post(`/api/broadcast/${sub}/events/fence`, {}, { apikey: token() })
  await v1.waitFor((x) => x.payload?.event === 'fence', { what: 'fence on v1' })
  await v1.expectNone((x) => x.payload?.event === 'octets' || x.raw.binary, 50, 'binary REST broadcast delivered to v1')
})

test('POST /api/broadcast/:topic/events/:event: 415 for other content types, 401 without auth', async () => {
  const sub = uniq('415')
  const r = await httpRequest({ method: 'POST', path: `/api/broadcast/${sub}/events/e`, body: 'hello', headers: { apikey: token(), 'Content-Type': 'text/plain' } })
  expectMatch(
    { status: r.status, json: r.json },
    { status: 415, json: { error: 'Unsupported Media Type. Use application/json or application/octet-stream' } },
    '415 response'
  )
  const u = await post(`/api/broadcast/${sub}/events/e`, { a: 1 })
  expectMatch({ status: u.status, json: u.json }, { status: 401, json: { message: 'Unauthorized' } }, 'no auth')
  const x = await post(`/api/broadcast/${sub}/events/e`, { a: 1 }, { apikey: expiredToken() })
  expectMatch({ status: x.status, json: x.json }, { status: 401, json: { message: 'Unauthorized' } }, 'expired token')
})

test('realtime-js httpSend (JSON and ArrayBuffer) resolves {success:true} and reaches subscribers', async (ctx) => {
  const sub = uniq('httpsend')
  const sender = makeClient(ctx, { label: 'sender' })
  const receiver = makeClient(ctx, { label: 'receiver' })
  const rch = receiver.channel(sub)
  const inbox = new Inbox('receiver')
  rch.on('broadcast', { event: '*' }, inbox.push)
  await subscribe(ctx, rch)
  const sch = sender.channel(sub)
  const r1 = await sch.httpSend('json-ev', { hello: 'world' })
  expectEqual(r1, { success: true }, 'httpSend JSON result')
  const g1 = await inbox.wait((m) => m.event === 'json-ev', { ctx, what: 'httpSend JSON' })
  expectEqual(g1, { type: 'broadcast', event: 'json-ev', payload: { hello: 'world' } }, 'received JSON')
  const data = bytes(64)
  const r2 = await sch.httpSend('bin-ev', data.buffer)
  expectEqual(r2, { success: true }, 'httpSend binary result')
  const g2 = await inbox.wait((m) => m.event === 'bin-ev', { ctx, what: 'httpSend binary' })
  expectTrue(g2.payload instanceof ArrayBuffer && Buffer.from(g2.payload).equals(Buffer.from(data)), 'binary payload differs')
})

test('realtime-js send() on a channel that is not joined falls back to POST /api/broadcast', async (ctx) => {
  const sub = uniq('fallback')
  const receiver = makeClient(ctx, { label: 'receiver' })
  const rch = receiver.channel(sub)
  const inbox = new Inbox('receiver')
  rch.on('broadcast', { event: 'fb' }, inbox.push)
  await subscribe(ctx, rch)
  const sender = makeClient(ctx, { label: 'sender (never connects)' })
  const warn = console.warn
  console.warn = () => {}
  let r
  try {
    r = await sender.channel(sub).send({ type: 'broadcast', event: 'fb', payload: { via: 'rest' } })
  } finally {
    console.warn = warn
  }
  expectTrue(r === 'ok', `send() fallback resolved ${r}`)
  const g = await inbox.wait(() => true, { ctx, what: 'REST fallback message' })
  expectEqual(g, { type: 'broadcast', event: 'fb', payload: { via: 'rest' } }, 'received')
})

test('realtime-js httpSend surfaces REST errors (expired token -> rejects with "Unauthorized")', async (ctx) => {
  const c = makeClient(ctx, { token: expiredToken() })
  let err = null
  try {
    await c.channel(uniq('httperr')).httpSend('e', { a: 1 })
  } catch (e) {
    err = e
  }
  expectTrue(err && err.message === 'Unauthorized', `httpSend error: ${err && err.message}`)
})

test('REST broadcast responses carry CORS "*" and the x-rate-* headers', async () => {
  const sub = uniq('hdrs')
  const res = await post('/api/broadcast', { messages: [{ topic: sub, event: 'h', payload: {} }] }, { apikey: token() })
  expect202(res, 'batch')
  expectMatch(res.headers['access-control-allow-origin'], '*', 'access-control-allow-origin')
  for (const h of ['x-rate-rolling', 'x-rate-limit', 'x-rate-limit-remaining']) {
    expectTrue(typeof res.headers[h] === 'string' && res.headers[h] !== '', `missing header ${h}: ${JSON.stringify(res.headers)}`)
  }
})
