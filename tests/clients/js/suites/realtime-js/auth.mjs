// Per-channel tokens over time: access_token refresh (setAuth) and expiry
// shutdown (`system` error then `phx_close`).

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectTrue, expectEqual } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox, until, frameError } from '../../lib/rt.mjs'
import { RawClient, sleep } from '../../lib/wire.mjs'
import { token, expiredToken, nowSecs } from '../../lib/jwt.mjs'
import { uniq, joinRefOf, pushesOf, inboundOn } from '../common.mjs'

const EXPIRED_MSG = /^Token has expired \d+ seconds ago$/

test('[2.0.0] setAuth(new token): access_token pushed to joined channels, never replied, channel keeps working', async (ctx) => {
  const c = makeClient(ctx)
  await c.setAuth(token({ sub: 'user-1' }))
  const ch = c.channel(uniq('refresh'), { config: { broadcast: { self: true, ack: true } } })
  const inbox = new Inbox('self broadcasts')
  ch.on('broadcast', { event: 'after' }, inbox.push)
  await subscribe(ctx, ch)
  const join = pushesOf(c).find((p) => p.event === 'phx_join')
  expectTrue(typeof join.payload.access_token === 'string', 'join payload carries access_token')
  const fresh = token({ sub: 'user-1', exp: nowSecs() + 7200 })
  await c.setAuth(fresh)
  const push = pushesOf(c).find((p) => p.event === 'access_token')
  if (!push) throw frameError(ctx, 'realtime-js did not push access_token')
  expectMatch(push.arr, [joinRefOf(ch), push.ref, ch.topic, 'access_token', { access_token: fresh }], 'access_token push')
  await sleep(400)
  const reply = inboundOn(c, ch.topic).find((m) => m.ref === push.ref)
  if (reply) throw frameError(ctx, `access_token must not be replied to, saw ${reply.raw.data}`)
  const r = await ch.send({ type: 'broadcast', event: 'after', payload: { ok: true } })
  expectTrue(r === 'ok', `send after refresh resolved ${r}`)
  await inbox.wait(() => true, { ctx, what: 'broadcast after refresh' })
  expectTrue(ch.state === 'joined', `channel state ${ch.state}`)
})

test('[2.0.0] a channel token about to expire is kept alive by setAuth with a fresh token', async (ctx) => {
  const c = makeClient(ctx)
  await c.setAuth(token({ exp: nowSecs() + 3 }))
  const ch = c.channel(uniq('extend'), { config: { broadcast: { self: true, ack: true } } })
  const system = new Inbox('system')
  ch.on('system', {}, system.push)
  const statuses = []
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(frameError(ctx, 'no SUBSCRIBED')), 5000)
    ch.subscribe((s) => {
      statuses.push(s)
      if (s === 'SUBSCRIBED') {
        clearTimeout(t)
        resolve()
      }
    })
  })
  await sleep(800)
  await c.setAuth(token({ exp: nowSecs() + 3600 }))
  await sleep(4500)
  expectTrue(!statuses.includes('CLOSED'), `channel was closed: ${JSON.stringify(statuses)}`)
  await system.none((p) => p.status === 'error', 0, 'no system error after the refresh')
  const r = await ch.send({ type: 'broadcast', event: 'still', payload: {} })
  expectTrue(r === 'ok', `send after the old exp resolved ${r}`)
})

for (const vsn of ['2.0.0', '1.0.0']) {
  test(`[${vsn}] channel token expiry: system error "Token has expired N seconds ago" then phx_close (realtime-js CLOSED)`, async (ctx) => {
    const c = makeClient(ctx, { vsn })
    await c.setAuth(token({ exp: nowSecs() + 2 }))
    const sub = uniq('expiry')
    const ch = c.channel(sub)
    const system = new Inbox('system')
    ch.on('system', {}, system.push)
    const statuses = []
    ch.subscribe((s) => statuses.push(s))
    await until(() => statuses.includes('SUBSCRIBED'), { ctx, what: 'SUBSCRIBED' })
    const jr = joinRefOf(ch)
    const p = await system.wait((x) => x.status === 'error', { ctx, what: 'system error', timeout: 8000 })
    expectMatch(p, { extension: 'system', status: 'error', message: EXPIRED_MSG, channel: sub }, 'system payload')
    await until(() => statuses.includes('CLOSED'), { ctx, what: 'CLOSED after phx_close', timeout: 3000 })
    const msgs = inboundOn(c, ch.topic)
    const iSys = msgs.findIndex((m) => m.event === 'system')
    const iClose = msgs.findIndex((m) => m.event === 'phx_close')
    expectTrue(iSys >= 0 && iClose > iSys, `expected system then phx_close, saw order system=${iSys} phx_close=${iClose}`)
    if (vsn === '2.0.0') {
      expectMatch(msgs[iSys].arr, [jr, null, ch.topic, 'system', { extension: 'system', status: 'error', message: EXPIRED_MSG, channel: sub }], 'system frame')
      expectMatch(msgs[iClose].arr, [jr, jr, ch.topic, 'phx_close', {}], 'phx_close frame')
    } else {
      expectMatch(msgs[iSys].obj, { topic: ch.topic, event: 'system', payload: { extension: 'system', status: 'error', message: EXPIRED_MSG, channel: sub }, ref: null }, 'system frame')
      expectMatch(msgs[iClose].obj, { topic: ch.topic, event: 'phx_close', payload: {}, ref: jr }, 'phx_close frame')
    }
    expectTrue(!msgs.some((m) => m.event === 'phx_error'), 'phx_error must not be used for an expiry shutdown')
    expectTrue(c.isConnected(), 'the socket itself stays connected')
  })
}

test('[2.0.0] access_token with an invalid token shuts the channel down (system error + phx_close)', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const sub = uniq('badrefresh')
  const topic = `realtime:${sub}`
  const { joinRef } = await raw.join(topic, { config: {}, access_token: token() })
  raw.send({ joinRef, topic, event: 'access_token', payload: { access_token: 'garbage-token' } })
  await raw.waitForFrame([joinRef, null, topic, 'system', { extension: 'system', status: 'error', message: 'The token provided is not a valid JWT', channel: sub }], {
    what: 'system error for the malformed token',
  })
  await raw.waitForFrame([joinRef, joinRef, topic, 'phx_close', {}])
})

test('[2.0.0] access_token with an expired token shuts the channel down with "Token has expired N seconds ago"', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const sub = uniq('expiredrefresh')
  const topic = `realtime:${sub}`
  const { joinRef } = await raw.join(topic, { config: {}, access_token: token() })
  raw.send({ joinRef, topic, event: 'access_token', payload: { access_token: expiredToken(50) } })
  await raw.waitForFrame([joinRef, null, topic, 'system', { extension: 'system', status: 'error', message: EXPIRED_MSG, channel: sub }])
  await raw.waitForFrame([joinRef, joinRef, topic, 'phx_close', {}])
})

test('[2.0.0] access_token that is null, sb_-prefixed or unchanged is ignored', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const topic = `realtime:${uniq('ignored')}`
  const tok = token()
  const { joinRef } = await raw.join(topic, { config: { broadcast: { ack: true, self: true } }, access_token: tok })
  const refs = [
    raw.send({ joinRef, topic, event: 'access_token', payload: { access_token: null } }),
    raw.send({ joinRef, topic, event: 'access_token', payload: { access_token: 'sb_publishable_xyz' } }),
    raw.send({ joinRef, topic, event: 'access_token', payload: { access_token: tok } }),
  ]
  await sleep(400)
  await raw.expectNone((m) => refs.includes(m.ref) || m.event === 'phx_close' || m.event === 'system', 0, 'reaction to an ignored access_token')
  const ref = raw.send({ joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'alive', payload: {} } })
  await raw.reply(ref, [joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }])
  expectEqual(raw.isOpen, true, 'socket open')
})
