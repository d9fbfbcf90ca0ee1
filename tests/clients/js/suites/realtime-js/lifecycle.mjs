// Connect, join, leave and heartbeat with realtime-js on both serializers,
// plus the exact control frames behind them.

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectTrue, ANY_STRING } from '../../lib/match.mjs'
import { makeClient, subscribe, inbound, until, currentSocket, frameError } from '../../lib/rt.mjs'
import { RawClient, sleep, httpRequest } from '../../lib/wire.mjs'
import { uniq, joinRefOf, pushesOf, inboundOn, wire } from '../common.mjs'

const VSNS = ['2.0.0', '1.0.0']

for (const vsn of VSNS) {
  test(`[${vsn}] realtime-js connects and joins: SUBSCRIBED, join reply echoes an empty postgres_changes`, async (ctx) => {
    const c = makeClient(ctx, { vsn })
    const ch = c.channel(uniq('join'))
    await subscribe(ctx, ch)
    expectTrue(c.isConnected(), 'client reports not connected after SUBSCRIBED')
    const jr = joinRefOf(ch)
    const join = pushesOf(c).find((p) => p.event === 'phx_join')
    expectTrue(join && join.kind === 'text', 'join was not sent as a text frame')
    if (vsn === '1.0.0') {
      expectTrue(!join.raw.data.startsWith('['), 'v1 join must be a JSON object')
    } else {
      expectTrue(join.raw.data.startsWith('['), 'v2 join must be a JSON array')
    }
    const reply = inboundOn(c, ch.topic).find((m) => m.event === 'phx_reply')
    const expected =
      vsn === '2.0.0'
        ? [jr, jr, ch.topic, 'phx_reply', { status: 'ok', response: { postgres_changes: [] } }]
        : { topic: ch.topic, event: 'phx_reply', payload: { status: 'ok', response: { postgres_changes: [] } }, ref: jr }
    expectMatch(wire(reply), expected, 'join reply')
  })

  test(`[${vsn}] realtime-js leave: unsubscribe() resolves ok, CLOSED, then phx_close with ref = join_ref`, async (ctx) => {
    const c = makeClient(ctx, { vsn })
    const ch = c.channel(uniq('leave'))
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
    const jr = joinRefOf(ch)
    const res = await ch.unsubscribe()
    expectTrue(res === 'ok', `unsubscribe() resolved ${res}, expected ok`)
    await until(() => statuses.includes('CLOSED'), { ctx, what: 'CLOSED status' })
    const leave = pushesOf(c).find((p) => p.event === 'phx_leave')
    await until(() => inboundOn(c, ch.topic).some((m) => m.event === 'phx_close'), { ctx, what: 'phx_close frame' })
    const msgs = inboundOn(c, ch.topic)
    const reply = msgs.find((m) => m.event === 'phx_reply' && m.ref === leave.ref)
    const close = msgs.find((m) => m.event === 'phx_close')
    if (vsn === '2.0.0') {
      expectMatch(reply.arr, [jr, leave.ref, ch.topic, 'phx_reply', { status: 'ok', response: {} }], 'leave reply')
      expectMatch(close.arr, [jr, jr, ch.topic, 'phx_close', {}], 'phx_close')
    } else {
      expectMatch(reply.obj, { topic: ch.topic, event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: leave.ref }, 'leave reply')
      expectMatch(close.obj, { topic: ch.topic, event: 'phx_close', payload: {}, ref: jr }, 'phx_close')
    }
  })

  test(`[${vsn}] realtime-js heartbeats every 300 ms are all answered; the socket stays up`, async (ctx) => {
    const statuses = []
    const c = makeClient(ctx, { vsn, heartbeatIntervalMs: 300, clientOptions: { heartbeatCallback: (s) => statuses.push(s) } })
    const ch = c.channel(uniq('hb'))
    await subscribe(ctx, ch)
    await sleep(1800)
    const oks = statuses.filter((s) => s === 'ok').length
    expectTrue(oks >= 3, `expected >= 3 heartbeat 'ok' callbacks in 1.8 s, saw ${JSON.stringify(statuses)}`)
    expectTrue(!statuses.includes('timeout') && !statuses.includes('error'), `heartbeat statuses: ${JSON.stringify(statuses)}`)
    expectTrue(c.__rec.sockets.length === 1, `client reconnected (${c.__rec.sockets.length} sockets)`)
    expectTrue(c.isConnected(), 'socket closed')
    // And the replies have the exact shape.
    const hb = pushesOf(c).filter((p) => p.topic === 'phoenix' && p.event === 'heartbeat')
    const replies = inbound(c).filter((m) => m.topic === 'phoenix')
    for (const p of hb.slice(0, 3)) {
      const r = replies.find((m) => m.ref === p.ref)
      if (!r) throw frameError(ctx, `no reply to heartbeat ref ${p.ref}`)
      const expected =
        vsn === '2.0.0'
          ? [null, p.ref, 'phoenix', 'phx_reply', { status: 'ok', response: {} }]
          : { topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: p.ref }
      expectMatch(wire(r), expected, 'heartbeat reply')
    }
    // The channel still works after the heartbeats.
    const chState = ch.state
    expectTrue(chState === 'joined', `channel state ${chState}`)
  })
}

test('[2.0.0] raw heartbeat on topic phoenix is answered exactly, with and without any join', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  raw.send({ joinRef: null, ref: '10', topic: 'phoenix', event: 'heartbeat', payload: {} })
  await raw.reply('10', [null, '10', 'phoenix', 'phx_reply', { status: 'ok', response: {} }])
  await raw.join(`realtime:${uniq('hb')}`)
  raw.send({ joinRef: null, ref: '11', topic: 'phoenix', event: 'heartbeat', payload: {} })
  await raw.reply('11', [null, '11', 'phoenix', 'phx_reply', { status: 'ok', response: {} }])
})

test('[1.0.0] raw heartbeat reply is an object without a join_ref key', async (ctx) => {
  const raw = await RawClient.connect({ ctx, vsn: '1.0.0' })
  raw.sendText(JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '10' }))
  await raw.reply('10', { topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: '10' })
})

test('[default vsn] a socket without vsn speaks 1.0.0 (object frames)', async (ctx) => {
  const raw = await RawClient.connect({ ctx, vsn: null })
  raw.sendText(JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '7' }))
  await raw.reply('7', { topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: '7' })
})

test('[2.0.0] malformed frames are dropped and the connection is kept', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  raw.sendText('this is not json')
  raw.sendText('[1,2]')
  raw.sendText('{"topic":"phoenix"}')
  raw.sendText('"just a string"')
  raw.send({ joinRef: null, ref: '20', topic: 'phoenix', event: 'heartbeat', payload: {} })
  await raw.reply('20', [null, '20', 'phoenix', 'phx_reply', { status: 'ok', response: {} }])
  expectTrue(raw.isOpen, 'socket closed after malformed frames')
})

test('[2.0.0] extra array elements beyond five are ignored', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  raw.sendText(JSON.stringify([null, '21', 'phoenix', 'heartbeat', {}, 'extra', 42]))
  await raw.reply('21', [null, '21', 'phoenix', 'phx_reply', { status: 'ok', response: {} }])
})

test('[1.0.0] a message without ref is dropped, the connection is kept', async (ctx) => {
  const raw = await RawClient.connect({ ctx, vsn: '1.0.0' })
  raw.sendText(JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {} }))
  raw.sendText(JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '22' }))
  await raw.reply('22', { topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: '22' })
  expectTrue(raw.isOpen, 'socket closed')
})

test('[2.0.0] realtime-js works against /realtime/v1 (socket at /realtime/v1/websocket)', async (ctx) => {
  const c = makeClient(ctx, { path: '/realtime/v1' })
  const ch = c.channel(uniq('gw'), { config: { broadcast: { self: true, ack: true } } })
  const got = []
  ch.on('broadcast', { event: 'e' }, (m) => got.push(m))
  await subscribe(ctx, ch)
  expectTrue(currentSocket(c).url.includes('/realtime/v1/websocket?'), `socket url ${currentSocket(c).url}`)
  const r = await ch.send({ type: 'broadcast', event: 'e', payload: { v: 1 } })
  expectTrue(r === 'ok', `send resolved ${r}`)
  await until(() => got.length === 1, { ctx, what: 'self broadcast' })
})

test('[2.0.0] realtime-js sends the documented query string (apikey, vsn=2.0.0)', async (ctx) => {
  const c = makeClient(ctx, { clientOptions: { logLevel: 'info' } })
  const ch = c.channel(uniq('url'))
  await subscribe(ctx, ch)
  const u = new URL(currentSocket(c).url)
  expectTrue(u.pathname === '/socket/websocket', `path ${u.pathname}`)
  expectTrue(u.searchParams.get('vsn') === '2.0.0', `vsn ${u.searchParams.get('vsn')}`)
  expectTrue(u.searchParams.get('log_level') === 'info', 'log_level missing')
  expectMatch(u.searchParams.get('apikey'), ANY_STRING, 'apikey')
})

test('[2.0.0] join payload with unknown keys and string booleans is accepted', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const topic = `realtime:${uniq('lenient')}`
  const { joinRef, reply } = await raw.join(topic, {
    config: { broadcast: { self: 'TRUE', ack: 'true' }, presence: { key: 42, enabled: 'false' }, private: 'false' },
    some_unknown_key: { nested: true },
  })
  raw.expectFrame(reply, [joinRef, joinRef, topic, 'phx_reply', { status: 'ok', response: { postgres_changes: [] } }], 'join reply')
  // self "TRUE" is honoured: our own broadcast comes back; ack "true": a reply.
  const ref = raw.send({ joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'x', payload: { a: 1 } } })
  await raw.reply(ref, [joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }])
  await raw.waitForFrame([null, null, topic, 'broadcast', { type: 'broadcast', event: 'x', payload: { a: 1 } }])
})

test('GET /healthcheck answers 200 ok; GET /api/ping answers {"message":"Success"}', async () => {
  const h = await httpRequest({ path: '/healthcheck' })
  expectMatch({ status: h.status, body: h.body }, { status: 200, body: 'ok' }, '/healthcheck')
  const p = await httpRequest({ path: '/api/ping' })
  expectMatch({ status: p.status, json: p.json }, { status: 200, json: { message: 'Success' } }, '/api/ping')
})
