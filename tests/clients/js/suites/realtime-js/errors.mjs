// Connect errors (HTTP status + body before the upgrade) and join errors
// (reply reasons), read with raw HTTP/ws and seen through realtime-js.

import { test } from '../../lib/harness.mjs'
import { config } from '../../lib/config.mjs'
import { expectMatch, expectTrue } from '../../lib/match.mjs'
import { makeClient, subscribeOutcome, subscribe } from '../../lib/rt.mjs'
import { RawClient, upgradeProbe, sleep } from '../../lib/wire.mjs'
import { token, expiredToken, sign, asymmetricToken, nowSecs } from '../../lib/jwt.mjs'
import { uniq } from '../common.mjs'

const V = { vsn: '2.0.0' }

async function expectConnectError(probeOpts, status, error, what) {
  const r = await upgradeProbe(probeOpts)
  const seen = { status: r.status, contentType: (r.headers['content-type'] || '').split(';')[0], body: safeJson(r.body) }
  expectMatch(seen, { status, contentType: 'application/json', body: { error } }, what)
  return r
}

function safeJson(s) {
  try {
    return JSON.parse(s)
  } catch {
    return s
  }
}

test('connect: valid token upgrades (101) on /socket/websocket and /realtime/v1/websocket', async () => {
  for (const path of ['/socket/websocket', '/realtime/v1/websocket']) {
    const r = await upgradeProbe({ path, query: { apikey: token(), ...V } })
    expectTrue(r.status === 101, `${path}: status ${r.status} body ${r.body}`)
  }
})

test('connect: missing api key -> 401 "API key is missing"', async () => {
  await expectConnectError({ query: V }, 401, 'API key is missing', 'no apikey')
})

test('connect: expired token -> 401 "Token has expired"', async () => {
  await expectConnectError({ query: { apikey: expiredToken(), ...V } }, 401, 'Token has expired', 'expired')
})

test('connect: role or exp missing -> 401 "Fields `role` and `exp` are required in JWT"', async () => {
  const msg = 'Fields `role` and `exp` are required in JWT'
  await expectConnectError({ query: { apikey: token({ role: undefined }), ...V } }, 401, msg, 'no role')
  await expectConnectError({ query: { apikey: sign({ role: 'anon', iat: nowSecs() }), ...V } }, 401, msg, 'no exp')
})

test('connect: malformed token -> 401 "The token provided is not a valid JWT"', async () => {
  const msg = 'The token provided is not a valid JWT'
  await expectConnectError({ query: { apikey: 'definitely-not-a-jwt', ...V } }, 401, msg, 'garbage')
  await expectConnectError({ query: { apikey: 'a.b.c', ...V } }, 401, msg, 'three garbage segments')
})

test('connect: bad signature -> 401 "Failed to validate JWT signature"', async () => {
  const bad = token({}, { secret: 'some-other-secret-that-is-also-32-chars-long' })
  await expectConnectError({ query: { apikey: bad, ...V } }, 401, 'Failed to validate JWT signature', 'bad signature')
})

test('connect: asymmetric alg on a tenant without JWKS -> 401 generic signer error (kid or not)', async () => {
  const msg = 'Failed to generate JWT signer, check your JWT secret or JWKS configuration'
  await expectConnectError({ query: { apikey: asymmetricToken('RS256'), ...V } }, 401, msg, 'RS256 without kid')
  await expectConnectError({ query: { apikey: asymmetricToken('ES256', 'key-1'), ...V } }, 401, msg, 'ES256 with kid, no JWKS')
  await expectConnectError({ query: { apikey: asymmetricToken('none'), ...V } }, 401, msg, 'alg none')
})

test('connect: tenant JWKS: unknown kid -> 401 signer error naming the kid; oct key by kid verifies HS256', async () => {
  const inst = config.tenant
  const octKey = Buffer.from('conformance-oct-key-for-kid-oct-1-0123456789')
  const kidMsg = (kid) => `Failed to generate JWT signer for key ID (kid) "${kid}", check your JWT secret or JWKS configuration`
  await expectConnectError({ instance: inst, query: { apikey: asymmetricToken('RS256', 'missing-kid'), ...V } }, 401, kidMsg('missing-kid'), 'RS256, kid not in JWKS')
  await expectConnectError({ instance: inst, query: { apikey: asymmetricToken('RS256'), ...V } }, 401, 'Failed to generate JWT signer, check your JWT secret or JWKS configuration', 'RS256 without kid')
  const withOct = token({}, { secret: octKey, header: { alg: 'HS256', typ: 'JWT', kid: 'oct-1' } })
  const ok = await upgradeProbe({ instance: inst, query: { apikey: withOct, ...V } })
  expectTrue(ok.status === 101, `HS256 signed with the oct key of kid oct-1: status ${ok.status} body ${ok.body}`)
  const secretButOctKid = token({}, { secret: inst.secret, header: { alg: 'HS256', typ: 'JWT', kid: 'oct-1' } })
  await expectConnectError({ instance: inst, query: { apikey: secretButOctKid, ...V } }, 401, 'Failed to validate JWT signature', 'kid oct-1 signed with the secret')
  const unknownKid = token({}, { secret: inst.secret, header: { alg: 'HS256', typ: 'JWT', kid: 'not-in-jwks' } })
  const fallback = await upgradeProbe({ instance: inst, query: { apikey: unknownKid, ...V } })
  expectTrue(fallback.status === 101, `HS256 with an unknown kid falls back to the secret: status ${fallback.status} body ${fallback.body}`)
})

test('connect: non-numeric iat -> 500 "Error connecting to Realtime"', async () => {
  await expectConnectError({ query: { apikey: token({ iat: 'yesterday' }), ...V } }, 500, 'Error connecting to Realtime', 'iat string')
})

test('connect: x-api-key header beats the apikey query param', async () => {
  const good = token()
  const bad = token({}, { secret: 'some-other-secret-that-is-also-32-chars-long' })
  const ok = await upgradeProbe({ query: { apikey: bad, ...V }, headers: { 'x-api-key': good } })
  expectTrue(ok.status === 101, `good header + bad param: status ${ok.status} body ${ok.body}`)
  await expectConnectError({ query: { apikey: good, ...V }, headers: { 'x-api-key': bad } }, 401, 'Failed to validate JWT signature', 'bad header + good param')
  const headerOnly = await upgradeProbe({ query: V, headers: { 'x-api-key': good } })
  expectTrue(headerOnly.status === 101, `header only: status ${headerOnly.status} body ${headerOnly.body}`)
})

test('connect: token is URL-decoded and whitespace-stripped', async () => {
  const t = token()
  const mangled = `${t.slice(0, 10)} \n${t.slice(10)}`
  const r = await upgradeProbe({ query: { apikey: mangled, ...V } })
  expectTrue(r.status === 101, `token with whitespace: status ${r.status} body ${r.body}`)
})

test('connect: unsupported vsn -> 403 with an empty body; supported ones upgrade', async () => {
  for (const vsn of ['3.0.0', 'banana', '0.9.0']) {
    const r = await upgradeProbe({ query: { apikey: token(), vsn } })
    expectMatch({ status: r.status, body: r.body }, { status: 403, body: '' }, `vsn=${vsn}`)
  }
  for (const vsn of ['1.0.0', '2.0.0', '2.0.1']) {
    const r = await upgradeProbe({ query: { apikey: token(), vsn } })
    expectTrue(r.status === 101, `vsn=${vsn}: status ${r.status} body ${r.body}`)
  }
})

test('connect: unknown tenant (Host header) -> 404 "Tenant not found"; IP/localhost/known label upgrade', async () => {
  await expectConnectError({ query: { apikey: token(), ...V }, host: 'nosuchtenant.example.test' }, 404, 'Tenant not found', 'unknown tenant')
  for (const host of ['localhost', `localhost:${config.main.port}`, `127.0.0.1:${config.main.port}`, 'realtime-dev.supabase-realtime', 'realtime-dev.example.test']) {
    const r = await upgradeProbe({ query: { apikey: token(), ...V }, host })
    expectTrue(r.status === 101, `Host ${host}: status ${r.status} body ${r.body}`)
  }
})

test('connect: tenant instance resolves its own name and secret (SELF_HOST_TENANT_NAME, API_JWT_SECRET)', async () => {
  const inst = config.tenant
  const own = token({}, { secret: inst.secret })
  for (const host of [`${inst.tenant}.example.test`, 'localhost', `127.0.0.1:${inst.port}`]) {
    const r = await upgradeProbe({ instance: inst, query: { apikey: own, ...V }, host })
    expectTrue(r.status === 101, `Host ${host}: status ${r.status} body ${r.body}`)
  }
  await expectConnectError({ instance: inst, query: { apikey: own, ...V }, host: 'realtime-dev.example.test' }, 404, 'Tenant not found', 'default name on renamed tenant')
  await expectConnectError({ instance: inst, query: { apikey: token(), ...V } }, 401, 'Failed to validate JWT signature', 'default secret on tenant instance')
})

test('connect: errors wait CONNECT_ERROR_BACKOFF_MS first; unsupported vsn does not', async () => {
  const inst = config.limits
  const r = await expectConnectError({ instance: inst, query: V }, 401, 'API key is missing', 'no apikey on limits instance')
  expectTrue(r.ms >= inst.connectBackoffMs - 20, `connect error answered after ${r.ms} ms, backoff is ${inst.connectBackoffMs} ms`)
  const v = await upgradeProbe({ instance: inst, query: { apikey: token({}, { secret: inst.secret }), vsn: '9.9.9' } })
  expectTrue(v.status === 403, `vsn 9.9.9: ${v.status}`)
  expectTrue(v.ms < inst.connectBackoffMs, `unsupported vsn answered after ${v.ms} ms (must not back off)`)
})

test('connect: non-GET upgrade request is refused with 400', async () => {
  const r = await upgradeProbe({ method: 'POST', query: { apikey: token(), ...V } })
  expectTrue(r.status === 400, `POST upgrade: status ${r.status}`)
})

test('realtime-js against a refused connect never reaches SUBSCRIBED and keeps retrying', async (ctx) => {
  const c = makeClient(ctx, { token: expiredToken(), reconnectAfterMs: () => 100 })
  const ch = c.channel(uniq('refused'))
  const out = await subscribeOutcome(ch, 1200)
  expectTrue(out.status !== 'SUBSCRIBED', `status ${out.status}`)
  await sleep(1500)
  expectTrue(!ch.state || ch.state !== 'joined', `channel state ${ch.state}`)
  expectTrue(c.__rec.sockets.length >= 2, `expected reconnect attempts, saw ${c.__rec.sockets.length} sockets`)
})

// ---------------------------------------------------------------------------
// Join errors

test('join: empty sub-topic "realtime:" -> TopicNameRequired (raw frame and realtime-js CHANNEL_ERROR)', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const { joinRef, reply } = await raw.join('realtime:', { config: {} }, { expectOk: false })
  raw.expectFrame(reply, [joinRef, joinRef, 'realtime:', 'phx_reply', { status: 'error', response: { reason: 'TopicNameRequired: You must provide a topic name' } }], 'join reply')
  const c = makeClient(ctx)
  const out = await subscribeOutcome(c.channel(''))
  expectMatch({ status: out.status, message: out.err?.message }, { status: 'CHANNEL_ERROR', message: 'TopicNameRequired: You must provide a topic name' }, 'realtime-js outcome')
})

test('join: topics outside realtime:* -> "unmatched topic" reply with null join_ref', async (ctx) => {
  for (const vsn of ['2.0.0', '1.0.0']) {
    const raw = await RawClient.connect({ ctx, vsn })
    for (const topic of ['room:1', 'phoenix:x', 'REALTIME:upper']) {
      const ref = raw.nextRef()
      raw.send({ joinRef: ref, ref, topic, event: 'phx_join', payload: { config: {} } })
      const expected =
        vsn === '2.0.0'
          ? [null, ref, topic, 'phx_reply', { status: 'error', response: { reason: 'unmatched topic' } }]
          : { topic, event: 'phx_reply', payload: { status: 'error', response: { reason: 'unmatched topic' } }, ref }
      await raw.reply(ref, expected)
    }
  }
})

test('push to a topic that is not joined -> "unmatched topic" reply', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const topic = `realtime:${uniq('notjoined')}`
  const ref = raw.send({ joinRef: '1', topic, event: 'broadcast', payload: { type: 'broadcast', event: 'x', payload: {} } })
  await raw.reply(ref, [null, ref, topic, 'phx_reply', { status: 'error', response: { reason: 'unmatched topic' } }])
  const ref2 = raw.send({ joinRef: '1', topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: {} } })
  await raw.reply(ref2, [null, ref2, topic, 'phx_reply', { status: 'error', response: { reason: 'unmatched topic' } }])
})

test('leave for a topic that is not joined -> ok reply only', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const topic = `realtime:${uniq('leave-unjoined')}`
  const ref = raw.send({ joinRef: '5', topic, event: 'phx_leave', payload: {} })
  const r = await raw.reply(ref)
  expectMatch(r.arr.slice(1), [ref, topic, 'phx_reply', { status: 'ok', response: {} }], 'leave reply (join_ref not checked)')
  await raw.expectNone((m) => m.event === 'phx_close', 200, 'phx_close for a channel that never existed')
})

const JOIN_TOKEN_CASES = [
  ['expired access_token', () => expiredToken(30), /^InvalidJWTToken: Token has expired \d+ seconds ago$/],
  ['access_token without role', () => token({ role: undefined }), /^InvalidJWTToken: Fields `role` and `exp` are required in JWT$/],
  ['access_token without exp', () => sign({ role: 'anon' }), /^InvalidJWTToken: Fields `role` and `exp` are required in JWT$/],
  ['malformed access_token', () => 'not.a.jwt', /^MalformedJWT: The token provided is not a valid JWT$/],
  ['badly signed access_token', () => token({}, { secret: 'another-secret-another-secret-another!!' }), /^JwtSignatureError: Failed to validate JWT signature$/],
  ['RS256 access_token without key', () => asymmetricToken('RS256'), /^JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration$/],
]

test('join: access_token whose kid is not in the tenant JWKS -> JwtSignerError naming the kid', async (ctx) => {
  const inst = config.tenant
  const raw = await RawClient.connect({ ctx, instance: inst, token: token({}, { secret: inst.secret }) })
  const topic = `realtime:${uniq('kid')}`
  const { joinRef, reply } = await raw.join(topic, { config: {}, access_token: asymmetricToken('ES256', 'nope') }, { expectOk: false })
  raw.expectFrame(
    reply,
    [joinRef, joinRef, topic, 'phx_reply', { status: 'error', response: { reason: 'JwtSignerError: Failed to generate JWT signer for key ID (kid) "nope", check your JWT secret or JWKS configuration' } }],
    'join reply'
  )
})

for (const [name, mk, reason] of JOIN_TOKEN_CASES) {
  test(`join: ${name} -> error reply ${reason.source}`, async (ctx) => {
    const raw = await RawClient.connect({ ctx })
    const topic = `realtime:${uniq('jwt')}`
    const { joinRef, reply } = await raw.join(topic, { config: {}, access_token: mk() }, { expectOk: false })
    raw.expectFrame(reply, [joinRef, joinRef, topic, 'phx_reply', { status: 'error', response: { reason } }], 'join reply')
  })
}

test('join: realtime-js with an expired access_token reports CHANNEL_ERROR with the server reason', async (ctx) => {
  const c = makeClient(ctx)
  await c.setAuth(expiredToken(120))
  const out = await subscribeOutcome(c.channel(uniq('rtjwt')))
  expectTrue(out.status === 'CHANNEL_ERROR', `status ${out.status}`)
  expectMatch(out.err?.message, /^InvalidJWTToken: Token has expired \d+ seconds ago$/, 'error message')
})

test('join: an access_token starting with sb_ falls back to the socket token', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const topic = `realtime:${uniq('sb')}`
  await raw.join(topic, { config: {}, access_token: 'sb_publishable_abcdefghijklmnop' })
  const c = makeClient(ctx)
  await c.setAuth('sb_secret_1234567890')
  await subscribe(ctx, c.channel(uniq('sb')))
})

test('join: user_token takes precedence over access_token (legacy)', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const topic = `realtime:${uniq('usertoken')}`
  const { joinRef, reply } = await raw.join(topic, { config: {}, user_token: expiredToken(10), access_token: token() }, { expectOk: false })
  raw.expectFrame(reply, [joinRef, joinRef, topic, 'phx_reply', { status: 'error', response: { reason: /^InvalidJWTToken: Token has expired \d+ seconds ago$/ } }], 'join reply')
})

test('join errors wait CHANNEL_ERROR_BACKOFF_MS before replying', async (ctx) => {
  const inst = config.limits
  const raw = await RawClient.connect({ ctx, instance: inst })
  const t0 = Date.now()
  const { reply } = await raw.join('realtime:', { config: {} }, { expectOk: false })
  const ms = Date.now() - t0
  expectTrue(reply.payload.status === 'error', 'expected an error reply')
  expectTrue(ms >= inst.channelBackoffMs - 20, `join error answered after ${ms} ms, backoff is ${inst.channelBackoffMs} ms`)
})

test(`join: more than TENANT_MAX_CHANNELS_PER_CLIENT channels -> ChannelRateLimitReached: Too many channels`, async (ctx) => {
  const inst = config.limits
  const tok = token({}, { secret: inst.secret })
  const raw = await RawClient.connect({ ctx, instance: inst, token: tok })
  const joined = []
  for (let i = 0; i < inst.maxChannels; i++) {
    const topic = `realtime:${uniq('cap')}`
    joined.push({ topic, ...(await raw.join(topic)) })
  }
  const topic = `realtime:${uniq('cap-over')}`
  const { joinRef, reply } = await raw.join(topic, { config: {} }, { expectOk: false })
  raw.expectFrame(reply, [joinRef, joinRef, topic, 'phx_reply', { status: 'error', response: { reason: 'ChannelRateLimitReached: Too many channels' } }], 'over-limit join reply')
  expectTrue(raw.isOpen, 'socket must stay open after ChannelRateLimitReached')
  // Leaving one frees a slot.
  const first = joined[0]
  const lref = raw.send({ joinRef: first.joinRef, topic: first.topic, event: 'phx_leave', payload: {} })
  await raw.reply(lref)
  await raw.waitFor((m) => m.event === 'phx_close' && m.topic === first.topic, { what: 'phx_close after leave' })
  await raw.join(`realtime:${uniq('cap-again')}`)
  // Another socket has its own budget.
  const other = await RawClient.connect({ ctx, instance: inst, token: tok })
  await other.join(`realtime:${uniq('cap-other')}`)
})

test('join: realtime-js sees ChannelRateLimitReached as CHANNEL_ERROR', async (ctx) => {
  const inst = config.limits
  const c = makeClient(ctx, { instance: inst })
  for (let i = 0; i < inst.maxChannels; i++) await subscribe(ctx, c.channel(uniq('rtcap')))
  const out = await subscribeOutcome(c.channel(uniq('rtcap-over')))
  expectMatch({ status: out.status, message: out.err?.message }, { status: 'CHANNEL_ERROR', message: 'ChannelRateLimitReached: Too many channels' }, 'outcome')
})

test('tenant max concurrent users: 429 at connect, ConnectionRateLimitReached at join', async (ctx) => {
  const inst = config.tenant
  const tok = token({}, { secret: inst.secret })
  // Sockets of earlier tests on this instance must have been counted out.
  for (let i = 0; i < 30; i++) {
    if ((await upgradeProbe({ instance: inst, query: { apikey: tok, ...V } })).status === 101) break
    await sleep(100)
  }
  const early = await RawClient.connect({ ctx, instance: inst, token: tok, label: 'early (connected before the cap is reached)' })
  const users = []
  for (let i = 0; i < inst.maxUsers; i++) {
    const u = await RawClient.connect({ ctx, instance: inst, token: tok, label: `user${i}` })
    await u.join(`realtime:${uniq('users')}`)
    users.push(u)
  }
  await expectConnectError({ instance: inst, query: { apikey: tok, ...V } }, 429, 'Too many connected users', 'connect over the cap')
  const topic = `realtime:${uniq('users-over')}`
  const { joinRef, reply } = await early.join(topic, { config: {} }, { expectOk: false })
  early.expectFrame(reply, [joinRef, joinRef, topic, 'phx_reply', { status: 'error', response: { reason: 'ConnectionRateLimitReached: Too many connected users' } }], 'join over the cap')
  // A socket that already counts may open more channels.
  await users[0].join(`realtime:${uniq('users-more')}`)
  // Closing a counted socket frees a slot.
  users[0].close()
  await users[0].closed
  let status = 0
  for (let i = 0; i < 50 && status !== 101; i++) {
    status = (await upgradeProbe({ instance: inst, query: { apikey: tok, ...V } })).status
    if (status !== 101) await sleep(100)
  }
  expectTrue(status === 101, `connect after a user left: status ${status}`)
})
