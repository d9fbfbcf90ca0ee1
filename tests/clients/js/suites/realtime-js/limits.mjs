// Per-tenant limits on the `limits` instance: payload size and the client
// presence rate limit.

import { test } from '../../lib/harness.mjs'
import { config } from '../../lib/config.mjs'
import { expectMatch, expectTrue } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox, until, frameError } from '../../lib/rt.mjs'
import { RawClient, httpRequest, sleep } from '../../lib/wire.mjs'
import { token } from '../../lib/jwt.mjs'
import { uniq, joinRefOf, lastBroadcastPush, inboundOn, wire } from '../common.mjs'

const inst = config.limits
const tok = () => token({}, { secret: inst.secret })
/** Comfortably over max_payload_size_in_kb*1000 + 500 bytes. */
const oversize = () => ({ blob: 'x'.repeat(inst.payloadKb * 1000 * 3 + 2000) })

for (const vsn of ['2.0.0', '1.0.0']) {
  test(`[${vsn}] oversize broadcast with ack -> error reply "payload_size_exceeded", nothing delivered`, async (ctx) => {
    const topic = uniq('big')
    const a = makeClient(ctx, { vsn, instance: inst, label: 'sender' })
    const b = makeClient(ctx, { vsn, instance: inst, label: 'receiver' })
    const cha = a.channel(topic, { config: { broadcast: { ack: true, self: true } } })
    const chb = b.channel(topic)
    const inB = new Inbox('receiver')
    chb.on('broadcast', { event: '*' }, inB.push)
    await subscribe(ctx, cha)
    await subscribe(ctx, chb)
    const res = await cha.send({ type: 'broadcast', event: 'huge', payload: oversize() })
    expectTrue(res === 'error', `send() resolved '${res}', expected 'error'`)
    const push = lastBroadcastPush(a, cha.topic)
    const reply = inboundOn(a, cha.topic).find((m) => m.event === 'phx_reply' && m.ref === push.ref)
    const jr = joinRefOf(cha)
    const expected =
      vsn === '2.0.0'
        ? [jr, push.ref, cha.topic, 'phx_reply', { status: 'error', response: 'payload_size_exceeded' }]
        : { topic: cha.topic, event: 'phx_reply', payload: { status: 'error', response: 'payload_size_exceeded' }, ref: push.ref }
    expectMatch(wire(reply), expected, 'oversize reply')
    // A small one still goes through on the same channel.
    const ok = await cha.send({ type: 'broadcast', event: 'small', payload: { s: 'x'.repeat(200) } })
    expectTrue(ok === 'ok', `small send resolved ${ok}`)
    await inB.wait((m) => m.event === 'small', { ctx, what: 'small broadcast' })
    expectTrue(!inB.items.some((m) => m.event === 'huge'), 'oversize broadcast was delivered')
  })
}

test('[2.0.0] oversize broadcast without ack is dropped silently (no reply, no delivery)', async (ctx) => {
  const topic = `realtime:${uniq('bigq')}`
  const a = await RawClient.connect({ ctx, instance: inst, token: tok(), label: 'sender' })
  const b = await RawClient.connect({ ctx, instance: inst, token: tok(), label: 'receiver' })
  const { joinRef } = await a.join(topic, { config: { broadcast: { ack: false } } })
  await b.join(topic)
  const ref = a.userBroadcast({ joinRef, topic, userEvent: 'huge', payload: oversize() })
  const ref2 = a.userBroadcast({ joinRef, topic, userEvent: 'fence', payload: { f: 1 } })
  await b.waitFor((m) => m.binary && m.userEvent === 'fence', { what: 'fence' })
  await b.expectNone((m) => m.binary && m.userEvent === 'huge', 100, 'oversize broadcast delivered')
  await a.expectNone((m) => m.ref === ref || m.ref === ref2, 100, 'reply with ack=false')
  expectTrue(a.isOpen, 'socket closed')
})

test('[2.0.0] oversize kind-3 binary and v2 text broadcasts get "payload_size_exceeded" too', async (ctx) => {
  const topic = `realtime:${uniq('bigraw')}`
  const a = await RawClient.connect({ ctx, instance: inst, token: tok() })
  const { joinRef } = await a.join(topic, { config: { broadcast: { ack: true } } })
  const r1 = a.userBroadcast({ joinRef, topic, userEvent: 'bin', payload: Buffer.alloc(inst.payloadKb * 3000 + 2000, 1), encoding: 0 })
  await a.reply(r1, [joinRef, r1, topic, 'phx_reply', { status: 'error', response: 'payload_size_exceeded' }])
  const r2 = a.send({ joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'txt', payload: oversize() } })
  await a.reply(r2, [joinRef, r2, topic, 'phx_reply', { status: 'error', response: 'payload_size_exceeded' }])
})

test('REST batch over the payload limit -> 422 "Payload size exceeds tenant limit"', async () => {
  const res = await httpRequest({
    instance: inst,
    method: 'POST',
    path: '/api/broadcast',
    headers: { 'Content-Type': 'application/json', apikey: tok() },
    body: { messages: [{ topic: uniq('restbig'), event: 'e', payload: oversize() }] },
  })
  expectTrue(res.status === 422, `status ${res.status} body ${res.body.slice(0, 300)}`)
  expectTrue(res.body.includes('Payload size exceeds tenant limit'), `body ${res.body.slice(0, 300)}`)
})

test(`client presence rate limit: more than CLIENT_PRESENCE_MAX_CALLS per window -> "Client presence rate limit exceeded" + phx_close`, async (ctx) => {
  const sub = uniq('prl')
  const topic = `realtime:${sub}`
  const a = await RawClient.connect({ ctx, instance: inst, token: tok() })
  const { joinRef } = await a.join(topic, { config: { presence: { key: 'k', enabled: true } } })
  const allowed = inst.presenceMaxCalls
  for (let i = 0; i < allowed; i++) {
    const ref = a.send({ joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { i } } })
    await a.reply(ref, [joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }], { what: `track #${i + 1} (within the limit)` })
  }
  await a.expectNone((m) => m.event === 'system' || m.event === 'phx_close', 0, 'shutdown within the limit')
  for (let i = allowed; i < allowed + 3; i++) {
    a.send({ joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { i } } })
    await sleep(50)
  }
  await a.waitForFrame([joinRef, null, topic, 'system', { extension: 'system', status: 'error', message: 'Client presence rate limit exceeded', channel: sub }], {
    what: 'system error "Client presence rate limit exceeded"',
  })
  await a.waitForFrame([joinRef, joinRef, topic, 'phx_close', {}])
  expectTrue(a.isOpen, 'the socket itself stays open')
})

test('client presence rate limit seen through realtime-js: system error then CLOSED', async (ctx) => {
  const c = makeClient(ctx, { instance: inst })
  const sub = uniq('prljs')
  const ch = c.channel(sub, { config: { presence: { key: 'me' } } })
  const system = new Inbox('system')
  ch.on('system', {}, system.push)
  ch.on('presence', { event: 'sync' }, () => {})
  const statuses = []
  ch.subscribe((s) => statuses.push(s))
  await until(() => statuses.includes('SUBSCRIBED'), { ctx, what: 'SUBSCRIBED' })
  for (let i = 0; i < inst.presenceMaxCalls + 3 && !statuses.includes('CLOSED'); i++) {
    await ch.track({ i })
  }
  const p = await system.wait((x) => x.status === 'error', { ctx, what: 'system error' })
  expectMatch(p, { extension: 'system', status: 'error', message: 'Client presence rate limit exceeded', channel: sub }, 'system payload')
  await until(() => statuses.includes('CLOSED'), { ctx, what: 'CLOSED' })
  if (statuses.includes('CHANNEL_ERROR')) throw frameError(ctx, `shutdown must be phx_close, not phx_error: ${JSON.stringify(statuses)}`)
})

test('presence track over the payload limit -> "Track message size exceeded" + phx_close', async (ctx) => {
  const sub = uniq('bigtrack')
  const topic = `realtime:${sub}`
  const a = await RawClient.connect({ ctx, instance: inst, token: tok() })
  const { joinRef } = await a.join(topic, { config: { presence: { key: 'k', enabled: true } } })
  a.send({ joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: oversize() } })
  await a.waitForFrame([joinRef, null, topic, 'system', { extension: 'system', status: 'error', message: 'Track message size exceeded', channel: sub }])
  await a.waitForFrame([joinRef, joinRef, topic, 'phx_close', {}])
  await a.expectNone((m) => m.event === 'presence_diff', 0, 'oversize meta was tracked')
})
