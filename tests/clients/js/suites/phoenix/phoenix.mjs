// The stock `phoenix` npm client (its own vsn 2.0.0 serializer) against /socket:
// join/leave/heartbeat/broadcast/presence, and kind 0 pushes re-fanned as kind 2.

import { Socket, Presence } from 'phoenix'
import { test } from '../../lib/harness.mjs'
import { config } from '../../lib/config.mjs'
import { expectMatch, expectTrue, expectEqual } from '../../lib/match.mjs'
import { Inbox, until, frameError, recordingTransport } from '../../lib/rt.mjs'
import { RawClient, sleep, showFrame, decodeClientBinary } from '../../lib/wire.mjs'
import { token } from '../../lib/jwt.mjs'
import { uniq, bytes } from '../common.mjs'

function phx(ctx, opts = {}) {
  const rec = { sockets: [] }
  const socket = new Socket(`ws://${config.main.host}:${config.main.port}/socket`, {
    transport: recordingTransport(rec),
    params: { apikey: token() },
    heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 30000,
    timeout: 5000,
    reconnectAfterMs: () => 500,
    rejoinAfterMs: () => 500,
    ...(opts.socketOptions || {}),
  })
  socket.__rec = rec
  const label = opts.label || 'phoenix.js'
  ctx.frameSources.push({
    label,
    dump: () =>
      rec.sockets
        .flatMap((s) => s.frames)
        .slice(-40)
        .map((f) => `      ${showFrame(f)}`)
        .join('\n'),
  })
  ctx.defer(async () => {
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 1000)
      socket.disconnect(() => {
        clearTimeout(t)
        resolve()
      })
    })
    for (const s of rec.sockets) s.terminate()
  })
  socket.connect()
  return socket
}

function join(ctx, channel) {
  return new Promise((resolve, reject) => {
    channel
      .join()
      .receive('ok', resolve)
      .receive('error', (e) => reject(frameError(ctx, `join ${channel.topic} error: ${JSON.stringify(e)}`)))
      .receive('timeout', () => reject(frameError(ctx, `join ${channel.topic} timed out`)))
  })
}

function pushAwait(ctx, channel, event, payload) {
  return new Promise((resolve, reject) => {
    channel
      .push(event, payload)
      .receive('ok', (r) => resolve({ status: 'ok', response: r }))
      .receive('error', (r) => resolve({ status: 'error', response: r }))
      .receive('timeout', () => reject(frameError(ctx, `push ${event} timed out`)))
  })
}

const framesIn = (socket) => socket.__rec.sockets.flatMap((s) => s.frames).filter((f) => f.dir === 'in')
const framesOut = (socket) => socket.__rec.sockets.flatMap((s) => s.frames).filter((f) => f.dir === 'out')

test('phoenix.js: vsn 2.0.0 by default; join reply ok with postgres_changes []', async (ctx) => {
  const s = phx(ctx)
  const ch = s.channel(`realtime:${uniq('pj')}`, { config: { broadcast: { self: false } } })
  const resp = await join(ctx, ch)
  expectEqual(resp, { postgres_changes: [] }, 'join response')
  const url = new URL(s.__rec.sockets[0].url)
  expectTrue(url.searchParams.get('vsn') === '2.0.0', `vsn ${url.searchParams.get('vsn')}`)
  const reply = framesIn(s).map((f) => JSON.parse(f.data)).find((a) => a[3] === 'phx_reply' && a[2] === ch.topic)
  expectMatch(reply, [ch.joinRef(), ch.joinRef(), ch.topic, 'phx_reply', { status: 'ok', response: { postgres_changes: [] } }], 'join reply frame')
})

test('phoenix.js: leave gets ok and onClose fires; server sends phx_close with ref = join_ref', async (ctx) => {
  const s = phx(ctx)
  const ch = s.channel(`realtime:${uniq('pjleave')}`, { config: {} })
  await join(ctx, ch)
  const jr = ch.joinRef()
  let closed = false
  ch.onClose(() => (closed = true))
  await new Promise((resolve, reject) => {
    ch.leave()
      .receive('ok', resolve)
      .receive('timeout', () => reject(frameError(ctx, 'leave timed out')))
  })
  await until(() => closed, { ctx, what: 'onClose' })
  await until(() => framesIn(s).some((f) => !f.binary && JSON.parse(f.data)[3] === 'phx_close'), { ctx, what: 'phx_close frame' })
  const close = framesIn(s).map((f) => JSON.parse(f.data)).find((a) => a[3] === 'phx_close')
  expectMatch(close, [jr, jr, ch.topic, 'phx_close', {}], 'phx_close frame')
})

test('phoenix.js: heartbeats every 250 ms are answered, socket not reopened', async (ctx) => {
  const s = phx(ctx, { heartbeatIntervalMs: 250 })
  const ch = s.channel(`realtime:${uniq('pjhb')}`, { config: {} })
  await join(ctx, ch)
  await sleep(1500)
  const hb = framesOut(s).map((f) => JSON.parse(f.data)).filter((a) => a[2] === 'phoenix' && a[3] === 'heartbeat')
  expectTrue(hb.length >= 3, `only ${hb.length} heartbeats sent`)
  const replies = framesIn(s).map((f) => JSON.parse(f.data)).filter((a) => a[2] === 'phoenix')
  for (const h of hb.slice(0, -1)) {
    const r = replies.find((a) => a[1] === h[1])
    if (!r) throw frameError(ctx, `no reply to heartbeat ${h[1]}`)
    expectMatch(r, [null, h[1], 'phoenix', 'phx_reply', { status: 'ok', response: {} }], 'heartbeat reply')
  }
  expectTrue(s.__rec.sockets.length === 1, `socket reconnected (${s.__rec.sockets.length} sockets)`)
  let rtt = null
  s.ping((ms) => (rtt = ms))
  await until(() => rtt !== null, { ctx, what: 'ping() round trip' })
})

test('phoenix.js: JSON broadcast push (text frame) reaches another phoenix.js socket, ack replies ok', async (ctx) => {
  const topic = `realtime:${uniq('pjbc')}`
  const a = phx(ctx, { label: 'sender' })
  const b = phx(ctx, { label: 'receiver' })
  const cha = a.channel(topic, { config: { broadcast: { ack: true, self: false } } })
  const chb = b.channel(topic, { config: {} })
  const inB = new Inbox('receiver')
  const inA = new Inbox('sender')
  chb.on('broadcast', inB.push)
  cha.on('broadcast', inA.push)
  await join(ctx, cha)
  await join(ctx, chb)
  const payload = { type: 'broadcast', event: 'hello', payload: { from: 'phoenix.js', n: [1, 2] } }
  const r = await pushAwait(ctx, cha, 'broadcast', payload)
  expectEqual(r, { status: 'ok', response: {} }, 'ack reply')
  const got = await inB.wait(() => true, { ctx, what: 'broadcast on receiver' })
  expectEqual(got, payload, 'received payload')
  await inA.none(() => true, 300, 'no self delivery with self=false')
  const out = framesOut(a).find((f) => !f.binary && JSON.parse(f.data)[3] === 'broadcast')
  expectTrue(!!out, 'phoenix.js sent the JSON broadcast as a text frame')
})

// PROTOCOL 2.3: a kind-0 "broadcast" is re-fanned as kind 2 to the topic's
// vsn 2.0.0 subscribers. The receiver here has only joined and listened.
// Binary kinds 0-2 only go to sockets that have sent kind 0 themselves:
// realtime-js (same vsn 2.0.0) cannot decode them and would throw, and a
// listen-only socket cannot be told apart from it. The positive case (both
// sides have pushed binary) is the next test.
test('phoenix.js: an ArrayBuffer push goes out as kind 0 and is not sent to a socket that never sent kind 0', async (ctx) => {
  const topic = `realtime:${uniq('pjbin')}`
  const a = phx(ctx, { label: 'sender' })
  const b = phx(ctx, { label: 'receiver' })
  const cha = a.channel(topic, { config: { broadcast: { self: false } } })
  const chb = b.channel(topic, { config: {} })
  const inB = new Inbox('receiver')
  chb.on('broadcast', inB.push)
  await join(ctx, cha)
  await join(ctx, chb)
  const data = bytes(777)
  cha.push('broadcast', data.buffer)
  const sent = await (async () => {
    for (let i = 0; i < 50; i++) {
      const f = framesOut(a).find((f) => f.binary)
      if (f) return f
      await new Promise((r) => setTimeout(r, 10))
    }
    return undefined
  })()
  expectTrue(sent, 'phoenix.js did not send the ArrayBuffer as a binary frame')
  const d = decodeClientBinary(sent.data)
  expectMatch({ bin: d.bin, topic: d.topic, event: d.event, joinRef: d.joinRef }, { bin: 0, topic, event: 'broadcast', joinRef: cha.joinRef() }, 'kind 0 push')
  await inB.none(() => true, 500, 'binary broadcast at a socket that never sent kind 0')
  expectTrue(!framesIn(b).some((f) => f.binary), 'a binary frame reached the listen-only socket')
})

test('phoenix.js: kind 0 broadcasts reach phoenix.js sockets that have pushed binary themselves', async (ctx) => {
  const topic = `realtime:${uniq('pjbin2')}`
  const a = phx(ctx, { label: 'a' })
  const b = phx(ctx, { label: 'b' })
  const cha = a.channel(topic, { config: {} })
  const chb = b.channel(topic, { config: {} })
  const inA = new Inbox('a')
  const inB = new Inbox('b')
  cha.on('broadcast', inA.push)
  chb.on('broadcast', inB.push)
  await join(ctx, cha)
  await join(ctx, chb)
  const is = (want) => (got) => got instanceof ArrayBuffer && Buffer.from(got).equals(Buffer.from(want))
  // a pushes binary first (whether b sees this one is the other test's question).
  cha.push('broadcast', bytes(4, 9).buffer)
  await sleep(200)
  chb.push('broadcast', bytes(5, 1).buffer)
  await inA.wait(is(bytes(5, 1)), { ctx, what: "b's binary broadcast on a" })
  cha.push('broadcast', bytes(6, 2).buffer)
  await inB.wait(is(bytes(6, 2)), { ctx, what: "a's binary broadcast on b" })
})

test('phoenix.js: kind 0 broadcast with self=true comes back to the sender as kind 2', async (ctx) => {
  const topic = `realtime:${uniq('pjbinself')}`
  const a = phx(ctx)
  const cha = a.channel(topic, { config: { broadcast: { self: true } } })
  const inA = new Inbox('sender')
  cha.on('broadcast', inA.push)
  await join(ctx, cha)
  cha.push('broadcast', bytes(10).buffer)
  const got = await inA.wait(() => true, { ctx, what: 'own binary broadcast' })
  expectTrue(got instanceof ArrayBuffer && Buffer.from(got).equals(Buffer.from(bytes(10))), 'own binary payload differs')
})

test('phoenix.js: kind 0 broadcast is not sent to vsn 1.0.0 sockets', async (ctx) => {
  const topic = `realtime:${uniq('pjbinv1')}`
  const a = phx(ctx)
  const v1 = await RawClient.connect({ ctx, vsn: '1.0.0', label: 'raw-v1' })
  await v1.join(topic)
  const cha = a.channel(topic, { config: {} })
  await join(ctx, cha)
  cha.push('broadcast', bytes(10).buffer)
  cha.push('broadcast', { type: 'broadcast', event: 'fence', payload: {} })
  await v1.waitFor((m) => m.payload?.event === 'fence', { what: 'fence' })
  await v1.expectNone((m) => m.raw.binary || (m.event === 'broadcast' && m.payload?.event !== 'fence'), 100, 'binary delivered to v1')
})

test('phoenix.js: Presence sync/join/leave between two sockets', async (ctx) => {
  const topic = `realtime:${uniq('pjpres')}`
  const a = phx(ctx, { label: 'alice' })
  const b = phx(ctx, { label: 'bob' })
  const cha = a.channel(topic, { config: { presence: { key: 'alice', enabled: true } } })
  const chb = b.channel(topic, { config: { presence: { key: 'bob', enabled: true } } })
  const pb = new Presence(chb)
  const joins = new Inbox('bob joins')
  const leaves = new Inbox('bob leaves')
  let synced = 0
  pb.onJoin((key, current, newPres) => joins.push({ key, newPres }))
  pb.onLeave((key, current, left) => leaves.push({ key, left }))
  pb.onSync(() => (synced += 1))
  await join(ctx, cha)
  await join(ctx, chb)
  await until(() => synced > 0, { ctx, what: 'initial presence sync on bob' })
  const r = await pushAwait(ctx, cha, 'presence', { type: 'presence', event: 'track', payload: { name: 'Alice' } })
  expectEqual(r, { status: 'ok', response: {} }, 'track reply')
  const j = await joins.wait((x) => x.key === 'alice', { ctx, what: 'alice join' })
  expectMatch(j.newPres.metas.map(({ phx_ref, ...rest }) => rest), [{ name: 'Alice' }], 'alice metas')
  const listed = pb.list((key, { metas }) => ({ key, n: metas.length }))
  expectEqual(listed, [{ key: 'alice', n: 1 }], 'presence list')
  await new Promise((resolve) => cha.leave().receive('ok', resolve))
  await leaves.wait((x) => x.key === 'alice', { ctx, what: 'alice leave' })
  expectEqual(pb.list(), [], 'presence list after leave')
})

test('phoenix.js: join error is delivered to receive("error") (unmatched topic)', async (ctx) => {
  const s = phx(ctx, { socketOptions: { rejoinAfterMs: () => 60000 } })
  const ch = s.channel('not-realtime:x', {})
  const err = await new Promise((resolve, reject) => {
    ch.join()
      .receive('ok', () => reject(new Error('join of a non-realtime topic succeeded')))
      .receive('error', resolve)
      .receive('timeout', () => reject(frameError(ctx, 'join timed out')))
  })
  expectEqual(err, { reason: 'unmatched topic' }, 'join error response')
})
