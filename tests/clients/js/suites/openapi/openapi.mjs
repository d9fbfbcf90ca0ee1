// The OpenAPI description served at /api/openapi against the server itself:
// it is the repository's src/server/openapi.json and valid OpenAPI 3.1; real
// answers of every endpoint (admin API on the `tenants` instance, limits on
// `limits`, `eventrate` and `joinrate`) are what it documents, status, media
// type, body schema and required headers; every documented response of
// every operation is seen at least once, or is listed below with why it
// cannot be provoked here; and no route outside it is served.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { test } from '../../lib/harness.mjs'
import { config, DEFAULT_SECRET } from '../../lib/config.mjs'
import { expectTrue, expectEqual } from '../../lib/match.mjs'
import { token, sign, nowSecs } from '../../lib/jwt.mjs'
import { loadSpec, METHODS } from './spec.mjs'
import { send, rawRequest } from './requests.mjs'
import { RawClient } from '../../lib/wire.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const REPO_DOC = path.join(here, '..', '..', '..', '..', '..', 'src', 'server', 'openapi.json')

/** Documented responses no request here can provoke, with why (keys as Spec.responses() names them). */
const NOT_PROVOKED = {
  '#/components/responses/RequestTimeout (408)': 'takes REQUEST_HEAD_TIMEOUT_MS (5 s); tests/slow_request_heads.rs pins it',
  '#/components/responses/ControlDbError (500)': 'needs the control database to fail in the middle of a request',
  '/api/ping get 500': 'needs the control database to fail while the tenant is looked up',
}
/** Entries of NOT_PROVOKED that hold only for a binary without the fault-injection feature. */
const WITHOUT_FAULT_INJECTION = {
  '/api/broadcast/{topic}/events/{event} post 500': 'the panic boundary needs the fault-injection feature (scripts/test builds it in); otherwise a private message whose check cannot be made',
}

const JSON_CT = { 'Content-Type': 'application/json' }
const hex = () => randomBytes(3).toString('hex')
const adminToken = (secret = DEFAULT_SECRET) => sign({ iat: nowSecs() }, { secret })
const wsHeaders = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' }

let specPromise = null
/** The served document, loaded once. */
function spec() {
  specPromise ??= (async () => {
    const res = await send({ inst: config.main, method: 'GET', path: '/api/openapi' })
    if (res.status !== 200) throw new Error(`GET /api/openapi: ${res.status} ${res.body.slice(0, 200)}`)
    return { res, spec: await loadSpec(JSON.parse(res.body)) }
  })()
  return specPromise
}

/** Sends each request and checks its answer; returns the problems, all of them. */
async function run(s, reqs) {
  const problems = []
  for (const req of reqs) {
    let res
    try {
      res = await send(req)
    } catch (e) {
      problems.push(`${req.method} ${req.path} on ${req.inst.name}: ${e.message}`)
      continue
    }
    if (req.want !== undefined && res.status !== req.want) {
      problems.push(`${req.method} ${req.path} on ${req.inst.name}: status ${res.status}, this case wants ${req.want}: ${res.body.slice(0, 200)}`)
    }
    problems.push(...s.check(req.method, req.path, res).map((p) => `${p} (on ${req.inst.name})`))
  }
  return problems
}

/** Repeats `between()` and `req` until `req` is answered `status` (a rate limiter's tick is 5 s); checks that answer. */
async function untilStatus(s, req, status, ms = 15000, between = async () => {}) {
  const deadline = Date.now() + ms
  let res
  for (;;) {
    res = await send(req)
    if (res.status === status) return s.check(req.method, req.path, res)
    if (Date.now() > deadline) break
    await between()
  }
  return [`${req.method} ${req.path} on ${req.inst.name}: never ${status} within ${ms} ms (last ${res.status} ${res.body.slice(0, 100)})`]
}

function tenantsInstance() {
  const t = config.tenants
  if (!t || t.missing.length > 0) throw new Error(`the \`tenants\` instance is not running (unset ${t?.missing.join(', ')}): start the dev database first (scripts/run-clients and scripts/test do)`)
  return t
}

let casesPromise = null
/** Every case, run once: the problems found. */
function cases() {
  casesPromise ??= (async () => {
    const { spec: s } = await spec()
    const problems = []
    const main = config.main
    const tok = token()
    const ctx = (inst, method, path, extra = {}) => ({ inst, method, path, ...extra })

    // Operations, health, metrics, CORS.
    problems.push(
      ...(await run(s, [
        ctx(main, 'GET', '/api/openapi', { want: 200 }),
        ctx(main, 'GET', '/realtime/v1/api/openapi', { want: 200 }),
        ctx(main, 'GET', '/healthcheck', { want: 200 }),
        ctx(main, 'GET', '/', { want: 200 }),
        ctx(main, 'GET', '/inspector', { want: 200 }),
        ctx(main, 'GET', '/inspector/app.js', { want: 200 }),
        ctx(main, 'GET', '/inspector/app.css', { want: 200 }),
        ctx(main, 'GET', '/inspector/config.json', { want: 200 }),
        ctx(main, 'GET', '/status', { want: 200 }),
        ctx(main, 'GET', '/inspector/status.js', { want: 200 }),
        ctx(main, 'GET', '/metrics', { want: 200 }),
        ctx(config.limits, 'GET', '/metrics', { want: 403 }),
        ctx(config.limits, 'GET', '/metrics', { want: 200, headers: { Authorization: `Bearer ${sign({ iat: nowSecs() }, { secret: config.limits.metricsSecret })}` } }),
        ctx(main, 'GET', '/api/ping', { want: 200 }),
        ctx(main, 'GET', '/realtime/v1/api/ping', { want: 200 }),
        ctx(main, 'GET', '/api/ping', { want: 401, host: `nobody-${hex()}.localhost` }),
        ctx(main, 'GET', '/api/ping', { want: 431, raw: `GET /api/ping HTTP/1.1\r\nHost: localhost\r\nx-big: ${'a'.repeat(5000)}\r\n\r\n` }),
        ...s.operations().filter((op) => op.method === 'options').map((op) => ctx(main, 'OPTIONS', op.path.replace(/\{[^}]+\}/g, 'x'), { want: 204 })),
      ]))
    )

    // Broadcast, batch and single.
    const sub = `oa-${hex()}`
    const batch = { messages: [{ topic: sub, event: 'e', payload: { a: 1 } }] }
    const big = Buffer.alloc(8_000_100, 0x20)
    const auth = { ...JSON_CT, apikey: tok }
    const single = `/api/broadcast/${sub}/events/ev`
    problems.push(
      ...(await run(s, [
        ctx(main, 'POST', '/api/broadcast', { want: 202, headers: auth, body: batch }),
        ctx(main, 'POST', '/realtime/v1/api/broadcast?apikey=x&vsn=2.0.0', { want: 202, headers: { ...JSON_CT, Authorization: `Bearer ${tok}` }, body: batch }),
        ctx(main, 'POST', '/api/broadcast', { want: 400, headers: auth, body: '{"messages":' }),
        ctx(main, 'POST', '/api/broadcast', { want: 400, headers: { ...auth, Accept: 'application/json' }, body: '{"messages":' }),
        ctx(main, 'POST', '/api/broadcast', { want: 401, headers: JSON_CT, body: batch }),
        ctx(main, 'POST', '/api/broadcast', { want: 401, headers: auth, body: batch, host: `nobody-${hex()}.localhost` }),
        ctx(main, 'POST', '/api/broadcast', { want: 413, headers: auth, body: big }),
        ctx(main, 'POST', '/api/broadcast', { want: 422, headers: auth, body: { messages: [{ topic: sub }] } }),
        ctx(main, 'POST', '/api/broadcast', { want: 422, headers: auth, body: {} }),
        ctx(main, 'POST', '/api/broadcast', { want: 500, headers: auth, body: { messages: [[1]] } }),
        ctx(main, 'POST', '/api/broadcast', { want: 501, raw: `POST /api/broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n` }),
        ctx(main, 'POST', '/api/broadcast', { want: 400, raw: `POST /api/broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n` }),
        ctx(config.eventrate, 'POST', '/api/broadcast', { want: 429, headers: { ...JSON_CT, apikey: tok }, body: { messages: [batch.messages[0], batch.messages[0]] } }),
        ctx(main, 'POST', single, { want: 202, headers: auth, body: { a: 1 } }),
        ctx(main, 'POST', `/realtime/v1${single}`, { want: 202, headers: { 'Content-Type': 'application/octet-stream', apikey: tok }, body: Buffer.from([0, 1, 2]) }),
        ctx(main, 'POST', single, { want: 400, headers: auth, body: '{' }),
        ctx(main, 'POST', single, { want: 401, headers: JSON_CT, body: {} }),
        ctx(main, 'POST', single, { want: 413, headers: auth, body: big }),
        ctx(main, 'POST', single, { want: 415, headers: { 'Content-Type': 'text/plain', apikey: tok }, body: 'hi' }),
        ctx(main, 'POST', `/api/broadcast/${sub}/events/%20`, { want: 422, headers: auth, body: {} }),
        ctx(main, 'POST', `${single}?private=true`, { headers: auth, body: {} }),
        // Over 16 MiB by its Content-Length: refused before the body is read.
        ctx(main, 'POST', '/api/broadcast', { want: 413, raw: `POST /api/broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 17000000\r\n\r\n{` }),
        ctx(config.limits, 'POST', single, { want: 422, headers: auth, body: { big: 'x'.repeat(2000) } }),
      ]))
    )
    // A handler that panics (the fault-injection feature's reserved event):
    // an empty 500, the connection closed.
    const fault = await send(ctx(main, 'POST', `/api/broadcast/${sub}/events/__panic__`, { headers: auth, body: {} }))
    const faultInjection = fault.status !== 202
    problems.push(...s.check('POST', `/api/broadcast/${sub}/events/__panic__`, fault))
    if (faultInjection && fault.status !== 500) problems.push(`the reserved event __panic__: ${fault.status}, want 500`)
    // The events limiter of `eventrate` (1/s): every accepted single counts.
    problems.push(...(await untilStatus(s, ctx(config.eventrate, 'POST', single, { headers: auth, body: {} }), 429)))

    // The WebSocket endpoint's refusals (PROTOCOL 1.5) and its upgrade.
    const ws = (inst, p, extra = {}) => ctx(inst, 'GET', p, { ws: true, ...extra })
    const badIat = sign({ role: 'anon', exp: nowSecs() + 3600, iat: 'x' })
    problems.push(
      ...(await run(s, [
        ws(main, `/socket/websocket?apikey=${tok}&vsn=2.0.0`, { want: 101 }),
        ws(main, `/realtime/v1/websocket?apikey=${tok}`, { want: 101 }),
        ws(main, `/socket/websocket?apikey=${tok}`, { want: 400, headers: { 'Sec-WebSocket-Key': 'short' } }),
        ws(main, '/socket/websocket', { want: 401 }),
        ws(main, `/socket/websocket?apikey=${tok}&vsn=3.0.0`, { want: 403 }),
        ws(main, `/socket/websocket?apikey=${tok}`, { want: 404, host: `nobody-${hex()}.localhost` }),
        ws(main, `/socket/websocket?apikey=${tok}`, { want: 426, headers: { 'Sec-WebSocket-Version': '8' } }),
        ws(main, `/socket/websocket?apikey=${badIat}`, { want: 500 }),
      ]))
    )
    // The joins limiter of `joinrate` (1/s), tripped by joins as in rates.mjs.
    const jr = config.joinrate
    const jrTok = token({}, { secret: jr.secret })
    const cleanups = []
    let raw = null
    try {
      problems.push(
        ...(await untilStatus(s, ws(jr, `/socket/websocket?apikey=${jrTok}`), 429, 15000, async () => {
          // Connected only now: the limiter may still be tripped by an earlier run.
          raw ??= await RawClient.connect({ ctx: { defer: (f) => cleanups.push(f), frameSources: [] }, instance: jr, token: jrTok }).catch(() => null)
          if (!raw?.isOpen) return
          const topic = `realtime:oa-${hex()}`
          const { joinRef, reply } = await raw.join(topic, { config: {} }, { expectOk: false })
          if (reply.payload.status === 'ok') await raw.reply(raw.send({ joinRef, topic, event: 'phx_leave', payload: {} }))
        }))
      )
    } finally {
      for (const f of cleanups) f()
    }

    // The admin API, on the instance with a control database.
    const t = tenantsInstance()
    const admin = { ...JSON_CT, Authorization: `Bearer ${adminToken()}` }
    const [a, b, nope] = [`oa-a-${hex()}`, `oa-b-${hex()}`, `oa-none-${hex()}`]
    const secret = `openapi-suite-secret-${hex()}-of-at-least-32-chars`
    problems.push(
      ...(await run(s, [
        ctx(main, 'GET', '/api/tenants', { want: 503, headers: admin }),
        ctx(t, 'POST', '/api/tenants', { want: 403, headers: JSON_CT, body: { tenant: { external_id: a, jwt_secret: secret } } }),
        ctx(t, 'POST', '/api/tenants', { want: 201, headers: admin, body: { tenant: { external_id: a, name: a, jwt_secret: secret } } }),
        ctx(t, 'POST', '/api/tenants', { want: 200, headers: admin, body: { tenant: { external_id: a, max_events_per_second: 50 } } }),
        ctx(t, 'POST', '/api/tenants', { want: 400, headers: admin, body: { nothing: 1 } }),
        ctx(t, 'POST', '/api/tenants', { want: 422, headers: admin, body: { tenant: { external_id: a, max_concurrent_users: 'many' } } }),
        ctx(t, 'GET', '/api/tenants', { want: 200, headers: admin }),
        ctx(t, 'GET', `/api/tenants/${a}`, { want: 200, headers: admin }),
        ctx(t, 'GET', `/realtime/v1/api/tenants/${a}`, { want: 200, headers: admin }),
        ctx(t, 'GET', `/api/tenants/${nope}`, { want: 404, headers: admin }),
        ctx(t, 'PUT', `/api/tenants/${b}`, { want: 201, headers: admin, body: { tenant: { jwt_secret: secret, suspend: true } } }),
        ctx(t, 'PUT', `/api/tenants/${b}`, { want: 200, headers: admin, body: { tenant: { name: 'b' } } }),
        ctx(t, 'PATCH', `/api/tenants/${b}`, { want: 200, headers: admin, body: { tenant: { placement: 'spread' } } }),
        ctx(t, 'PATCH', `/api/tenants/${b}`, { want: 422, headers: admin, body: { tenant: { placement: 'everywhere' } } }),
        ctx(t, 'PUT', `/api/tenants/${b}`, { want: 400, headers: admin, body: [] }),
        ctx(t, 'GET', `/api/tenants/${a}/health`, { want: 200, headers: admin }),
        ctx(t, 'GET', `/api/tenants/${nope}/health`, { want: 404, headers: admin }),
        ctx(t, 'POST', `/api/tenants/${a}/reload`, { want: 204, headers: admin }),
        ctx(t, 'POST', `/api/tenants/${nope}/reload`, { want: 404, headers: admin }),
        ctx(t, 'POST', `/api/tenants/${a}/shutdown`, { want: 204, headers: admin }),
        ctx(t, 'POST', `/api/tenants/${nope}/shutdown`, { want: 404, headers: admin }),
        // A suspended tenant's answers.
        ctx(t, 'POST', '/api/broadcast', { want: 403, host: `${b}.localhost`, headers: { ...JSON_CT, apikey: token({}, { secret }) }, body: batch }),
        ctx(t, 'POST', single, { want: 403, host: `${b}.localhost`, headers: { ...JSON_CT, apikey: token({}, { secret }) }, body: {} }),
        ws(t, `/socket/websocket?apikey=${token({}, { secret })}`, { want: 403, host: `${b}.localhost` }),
        ctx(t, 'DELETE', `/api/tenants/${a}`, { want: 204, headers: admin }),
        ctx(t, 'DELETE', `/api/tenants/${b}`, { want: 204, headers: admin }),
        ctx(t, 'DELETE', `/api/tenants/${nope}`, { want: 204, headers: admin }),
      ]))
    )
    return { spec: s, problems, faultInjection }
  })()
  return casesPromise
}

test('GET /api/openapi is src/server/openapi.json, valid OpenAPI 3.1 (@seriousme/openapi-schema-validator)', async () => {
  const { res, spec: s } = await spec()
  expectEqual(res.headers['content-type'], 'application/json', 'content-type')
  const same = JSON.stringify(JSON.parse(res.body)) === JSON.stringify(JSON.parse(readFileSync(REPO_DOC, 'utf8')))
  expectTrue(same, 'the served document is not src/server/openapi.json (rebuild the server?)')
  expectTrue(/^3\.1\.\d+$/.test(s.raw.openapi), `openapi ${s.raw.openapi}`)
})

test('real answers of every endpoint match the description (status, media type, body schema, headers)', async () => {
  const { problems } = await cases()
  expectTrue(problems.length === 0, `${problems.length} answer(s) the description does not allow:\n${problems.join('\n')}`)
}, { timeout: 90000 })

test('every documented response of every operation was answered (or is listed as not provokable, with why)', async () => {
  const { spec: s, faultInjection } = await cases()
  const notProvoked = { ...NOT_PROVOKED, ...(faultInjection ? {} : WITHOUT_FAULT_INJECTION) }
  const documented = new Set(s.responses().map((r) => r.key))
  const missing = [...documented].filter((k) => !s.seen.has(k) && !notProvoked[k])
  const stale = Object.keys(notProvoked).filter((k) => !documented.has(k) || s.seen.has(k))
  expectTrue(missing.length === 0, `documented but never answered:\n${missing.join('\n')}`)
  expectTrue(stale.length === 0, `NOT_PROVOKED entries that are not documented or were answered after all:\n${stale.join('\n')}`)
}, { timeout: 90000 })

// Paths probed with every method besides the documented ones (so that a
// route dropped from the description is still probed): where no documented
// operation serves a method, it must get the catch-all `404
// {"message":"not found"}` (OPTIONS: the catch-all preflight; the WebSocket
// paths refuse other methods with an empty 400).
const KNOWN_ROUTES = ['/', '/inspector', '/inspector/app.js', '/inspector/app.css', '/inspector/config.json', '/status', '/inspector/status.js', '/healthcheck', '/metrics', '/api/ping', '/api/openapi', '/api/broadcast', '/api/broadcast/x/events/y', '/api/tenants', '/api/tenants/x', '/api/tenants/x/reload', '/api/tenants/x/shutdown', '/api/tenants/x/health', '/socket/websocket', '/realtime/v1/websocket']
const UNDOCUMENTED_PATHS = ['/inspector/', '/inspector/other.js', '/status/', '/index.html', '/swaggerui', '/api', '/api/broadcast/x', '/api/broadcast/x/events', '/api/tenants/x/other', '/metrics/eu', '/socket/longpoll', '/socket', '/worker.js', '/realtime/v1/api/nothing', '/realtime/v1/healthcheck', '/realtime/v1/metrics', '/api/openapi.json']

test('no route is served that the description leaves out', async () => {
  const { spec: s } = await spec()
  const t = tenantsInstance()
  const problems = []
  const concrete = s.operations().map((op) => ({ ...op, url: op.path.replace(/\{[^}]+\}/g, `oa-none-${hex()}`) }))
  const paths = [...new Set([...concrete.flatMap((op) => op.servers.map((p) => p + op.url)), ...KNOWN_ROUTES.flatMap((p) => (p.startsWith('/api/') ? [p, `/realtime/v1${p}`] : [p])), ...UNDOCUMENTED_PATHS])]
  for (const p of paths) {
    for (const method of METHODS.map((m) => m.toUpperCase())) {
      if (method === 'HEAD') continue // Node's client reads no body of a HEAD answer
      if (s.match(method, p)) continue // documented: the cases above answer it
      if (method === 'GET' && p.endsWith('/websocket')) {
        problems.push(`GET ${p}: the WebSocket endpoint is not in the description`)
        continue
      }
      const inst = p.includes('/api/tenants') ? t : config.main
      const res = await send({ inst, method, path: p, headers: JSON_CT, body: method === 'GET' || method === 'OPTIONS' ? undefined : {} })
      const catchAll = res.status === 404 && res.json?.message === 'not found'
      if (method === 'OPTIONS' && !p.includes('/api/tenants') && !p.endsWith('/websocket')) {
        if (res.status !== 204) problems.push(`OPTIONS ${p}: ${res.status}, the catch-all preflight is 204`)
      } else if (p.endsWith('/websocket')) {
        if (res.status !== 400) problems.push(`${method} ${p}: ${res.status}, the WebSocket endpoint refuses it with 400`)
      } else if (!catchAll) {
        problems.push(`${method} ${p}: served (${res.status} ${res.body.slice(0, 80)}) but not in the description`)
      }
    }
  }
  // HEAD is not served anywhere: raw, since Node's client ignores a HEAD answer's body.
  const head = await rawRequest(config.main, 'HEAD /healthcheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  if (head.status !== 404) problems.push(`HEAD /healthcheck: ${head.status}, want the catch-all 404`)
  expectTrue(problems.length === 0, `${problems.length} route(s) served outside the description:\n${problems.join('\n')}`)
}, { timeout: 60000 })
