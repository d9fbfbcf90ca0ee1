// Channel semantics read off raw frames: duplicate joins, join_ref
// leniency, Postgres Changes binding echo without a database.

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectTrue, pred } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox } from '../../lib/rt.mjs'
import { RawClient, sleep } from '../../lib/wire.mjs'
import { uniq, inboundOn, wire } from '../common.mjs'

const PG_MSG = 'Postgres Changes are not configured for this tenant'

test('[2.0.0] duplicate phx_join closes the old join_ref (phx_close) and the new join works', async (ctx) => {
  const topic = `realtime:${uniq('dup')}`
  const a = await RawClient.connect({ ctx, label: 'dup-joiner' })
  const b = await RawClient.connect({ ctx, label: 'sender' })
  a.send({ joinRef: '1', ref: '1', topic, event: 'phx_join', payload: { config: {} } })
  await a.reply('1', ['1', '1', topic, 'phx_reply', { status: 'ok', response: { postgres_changes: [] } }])
  a.send({ joinRef: '2', ref: '2', topic, event: 'phx_join', payload: { config: { broadcast: { ack: true } } } })
  await a.waitForFrame(['1', '1', topic, 'phx_close', {}], { what: 'phx_close for the old join_ref 1' })
  await a.reply('2', ['2', '2', topic, 'phx_reply', { status: 'ok', response: { postgres_changes: [] } }])
  const { joinRef } = await b.join(topic)
  b.userBroadcast({ joinRef, topic, userEvent: 'once', payload: { n: 1 } })
  await a.waitFor((m) => m.binary && m.userEvent === 'once', { what: 'broadcast on the re-joined channel' })
  await sleep(200)
  const n = a.messages.filter((m) => m.binary && m.userEvent === 'once').length
  expectTrue(n === 1, `broadcast delivered ${n} times after a duplicate join, expected once`)
  // The new join's config (ack) is the one in force.
  const ref = a.userBroadcast({ joinRef: '2', topic, userEvent: 'acked', payload: {} })
  await a.reply(ref, ['2', ref, topic, 'phx_reply', { status: 'ok', response: {} }])
  await a.expectNone((m) => m.event === 'phx_close' && m.arr[0] === '2', 0, 'phx_close for the new join')
})

test('[2.0.0] join_ref leniency: pushes with a stale or missing join_ref are still processed', async (ctx) => {
  const topic = `realtime:${uniq('lenient')}`
  const a = await RawClient.connect({ ctx, label: 'pusher' })
  const b = await RawClient.connect({ ctx, label: 'receiver' })
  await a.join(topic, { config: { broadcast: { ack: true } } })
  await b.join(topic)
  const cases = [
    ['stale join_ref (text)', () => a.send({ joinRef: '999', topic, event: 'broadcast', payload: { type: 'broadcast', event: 'stale', payload: {} } })],
    ['null join_ref (text)', () => a.send({ joinRef: null, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'nulljr', payload: {} } })],
    ['empty join_ref (kind 3)', () => a.userBroadcast({ joinRef: '', topic, userEvent: 'emptyjr', payload: {} })],
    ['stale join_ref (kind 3)', () => a.userBroadcast({ joinRef: '12345', topic, userEvent: 'stale3', payload: {} })],
  ]
  for (const [what, send] of cases) {
    const ref = send()
    const r = await a.reply(ref, undefined, { what: `reply for ${what}` })
    expectMatch(r.arr.slice(1), [ref, topic, 'phx_reply', { status: 'ok', response: {} }], `reply for ${what}`)
  }
  for (const ev of ['stale', 'nulljr']) await b.waitFor((m) => m.text && m.event === 'broadcast' && m.payload.event === ev, { what: `delivery of ${ev}` })
  for (const ev of ['emptyjr', 'stale3']) await b.waitFor((m) => m.binary && m.userEvent === ev, { what: `delivery of ${ev}` })
})

test('[1.0.0] join_ref leniency: a push without join_ref is processed', async (ctx) => {
  const topic = `realtime:${uniq('lenient1')}`
  const a = await RawClient.connect({ ctx, vsn: '1.0.0' })
  await a.join(topic, { config: { broadcast: { ack: true, self: true } } })
  a.sendText(JSON.stringify({ topic, event: 'broadcast', payload: { type: 'broadcast', event: 'nojr', payload: { v: 1 } }, ref: '77' }))
  await a.reply('77', { topic, event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: '77' })
  await a.waitForFrame({ topic, event: 'broadcast', payload: { type: 'broadcast', event: 'nojr', payload: { v: 1 } }, ref: null })
})

const BINDINGS = [
  { event: 'INSERT', schema: 'public', table: 'todos' },
  { event: '*', schema: 'public', table: 'todos', filter: 'id=eq.1' },
  { event: 'UPDATE', schema: 'public', table: 'todos', filter: 'id=eq.1', select: ['id', 'title'] },
  { event: 'INSERT', schema: 'public', table: 'todos' },
]

for (const vsn of ['2.0.0', '1.0.0']) {
  test(`[${vsn}] postgres_changes bindings: echoed in order with integer ids, then system error "${PG_MSG}"`, async (ctx) => {
    const sub = uniq('pg')
    const topic = `realtime:${sub}`
    const raw = await RawClient.connect({ ctx, vsn })
    const { joinRef, reply } = await raw.join(topic, { config: { postgres_changes: BINDINGS } })
    const idOk = pred('integer id in 0..2^27-1', (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 27)
    const expectedResponse = { postgres_changes: BINDINGS.map((b) => ({ ...b, id: idOk })) }
    const expected =
      vsn === '2.0.0'
        ? [joinRef, joinRef, topic, 'phx_reply', { status: 'ok', response: expectedResponse }]
        : { topic, event: 'phx_reply', payload: { status: 'ok', response: expectedResponse }, ref: joinRef }
    raw.expectFrame(reply, expected, 'join reply')
    const ids = reply.payload.response.postgres_changes.map((b) => b.id)
    expectTrue(ids[0] === ids[3], `identical bindings must get identical ids, got ${ids[0]} and ${ids[3]}`)
    expectTrue(new Set(ids.slice(0, 3)).size === 3, `different bindings got equal ids: ${JSON.stringify(ids)}`)
    const sysPayload = { extension: 'postgres_changes', status: 'error', message: PG_MSG, channel: sub }
    if (vsn === '2.0.0') await raw.waitForFrame([joinRef, null, topic, 'system', sysPayload], { timeout: 5000 })
    else await raw.waitForFrame({ topic, event: 'system', payload: sysPayload, ref: null }, { timeout: 5000 })
    // The channel itself stays joined: broadcast still works.
    expectTrue(raw.isOpen, 'socket closed')
    await raw.expectNone((m) => m.event === 'phx_close' || m.event === 'phx_error', 100, 'channel closed after the postgres_changes error')
  })

  test(`[${vsn}] realtime-js accepts the postgres_changes echo (SUBSCRIBED) and gets the system error`, async (ctx) => {
    const c = makeClient(ctx, { vsn })
    const sub = uniq('pgjs')
    const ch = c.channel(sub)
    const system = new Inbox('system')
    ch.on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'todos' }, () => {})
    ch.on('postgres_changes', { event: '*', schema: 'public', table: 'todos', filter: 'id=eq.1' }, () => {})
    ch.on('system', {}, system.push)
    await subscribe(ctx, ch)
    const p = await system.wait((x) => x.extension === 'postgres_changes', { ctx, what: 'postgres_changes system message', timeout: 5000 })
    expectMatch(p, { extension: 'postgres_changes', status: 'error', message: PG_MSG, channel: sub }, 'system payload')
    const ids = ch.bindings.postgres_changes.map((b) => b.id)
    expectTrue(ids.every((id) => Number.isInteger(id)), `client stored ids ${JSON.stringify(ids)}`)
    const reply = inboundOn(c, ch.topic).find((m) => m.event === 'phx_reply')
    const response = wire(reply) && reply.payload.response
    expectTrue(response.postgres_changes.length === 2, `join reply echoed ${response.postgres_changes.length} bindings`)
    expectTrue(ch.state === 'joined', `channel state ${ch.state}`)
  })
}

test('[2.0.0] join without postgres_changes sends no postgres_changes system message', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const topic = `realtime:${uniq('nopg')}`
  await raw.join(topic, { config: { postgres_changes: [] } })
  await raw.expectNone((m) => m.event === 'system', 500, 'system message without bindings')
})
