// Broadcast between realtime-js clients: self/ack matrix on both serializers,
// binary payloads, v1<->v2 cross delivery, and the exact frames behind them.

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectTrue, expectEqual, ANY_STRING } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox, until, frameError } from '../../lib/rt.mjs'
import { RawClient, sleep } from '../../lib/wire.mjs'
import { uniq, joinRefOf, lastBroadcastPush, inboundOn, wire, bytes } from '../common.mjs'

const VSNS = ['2.0.0', '1.0.0']
const PAYLOAD = { n: 1, s: 'héllo ✓', nested: { arr: [1, 2, 3], f: 1.5 }, nul: null, t: true }

function cfg(broadcast, extra = {}) {
  return { config: { broadcast: { ...broadcast }, ...extra } }
}

/** Checks the receiver saw `event`/`payload` in the frame form its serializer implies for a JSON-origin user broadcast. */
function expectUserBroadcastFrame(ctx, client, topic, userEvent, payload, { origin }) {
  const msgs = inboundOn(client, topic)
  if (client.vsn === '2.0.0') {
    if (origin === 'binary3') {
      const m = msgs.find((x) => x.binary && x.bin === 4 && x.userEvent === userEvent)
      if (!m) throw frameError(ctx, `receiver: no kind 4 frame for event ${userEvent}`)
      expectMatch(
        { topic: m.topic, userEvent: m.userEvent, metadata: m.metadata, encoding: m.encoding, payload: JSON.parse(m.payload.toString('utf8')) },
        { topic, userEvent, metadata: '', encoding: 1, payload },
        'kind 4 frame'
      )
    } else {
      const m = msgs.find((x) => x.text && x.event === 'broadcast' && x.payload?.event === userEvent)
      if (!m) throw frameError(ctx, `receiver: no text broadcast frame for event ${userEvent}`)
      expectMatch(m.arr, [null, null, topic, 'broadcast', { type: 'broadcast', event: userEvent, payload }], 'text broadcast frame')
    }
  } else {
    const m = msgs.find((x) => x.text && x.event === 'broadcast' && x.payload?.event === userEvent)
    if (!m) throw frameError(ctx, `receiver: no v1 broadcast frame for event ${userEvent}`)
    expectMatch(m.obj, { topic, event: 'broadcast', payload: { type: 'broadcast', event: userEvent, payload }, ref: null }, 'v1 broadcast frame')
  }
}

for (const vsn of VSNS) {
  for (const self of [true, false]) {
    for (const ack of [true, false]) {
      test(`[${vsn}] broadcast self=${self} ack=${ack}: receiver gets it, sender ${self ? 'gets' : 'does not get'} its own, ${ack ? 'a reply' : 'no reply'}`, async (ctx) => {
        const topic = uniq('bc')
        const a = makeClient(ctx, { vsn, label: `sender-${vsn}` })
        const b = makeClient(ctx, { vsn, label: `receiver-${vsn}` })
        const cha = a.channel(topic, cfg({ self, ack }))
        const chb = b.channel(topic, cfg({ self, ack }))
        const inA = new Inbox('sender callbacks')
        const inB = new Inbox('receiver callbacks')
        cha.on('broadcast', { event: 'ping' }, inA.push)
        chb.on('broadcast', { event: 'ping' }, inB.push)
        await subscribe(ctx, cha)
        await subscribe(ctx, chb)

        const res = await cha.send({ type: 'broadcast', event: 'ping', payload: PAYLOAD })
        expectTrue(res === 'ok', `send() resolved '${res}', expected 'ok'`)
        const got = await inB.wait(() => true, { ctx, what: 'the broadcast' })
        expectEqual(got, { type: 'broadcast', event: 'ping', payload: PAYLOAD }, 'receiver callback payload')
        if (self) {
          const own = await inA.wait(() => true, { ctx, what: 'own broadcast (self=true)' })
          expectEqual(own, { type: 'broadcast', event: 'ping', payload: PAYLOAD }, 'sender callback payload')
        } else {
          await inA.none(() => true, 400, 'no own broadcast with self=false')
        }

        // What went over the wire.
        const jr = joinRefOf(cha)
        const push = lastBroadcastPush(a, cha.topic)
        if (vsn === '2.0.0') {
          expectTrue(push && push.kind === 'bin3', `v2 broadcast must be sent as kind 3, was ${push && push.kind}`)
          expectMatch(
            { joinRef: push.joinRef, topic: push.topic, userEvent: push.userEvent, metadata: push.metadata, encoding: push.encoding },
            { joinRef: jr, topic: cha.topic, userEvent: 'ping', metadata: '', encoding: 1 },
            'kind 3 header'
          )
        } else {
          expectMatch(
            push.obj,
            { topic: cha.topic, event: 'broadcast', payload: { type: 'broadcast', event: 'ping', payload: PAYLOAD }, ref: ANY_STRING, join_ref: jr },
            'v1 broadcast push'
          )
        }
        expectUserBroadcastFrame(ctx, b, chb.topic, 'ping', PAYLOAD, { origin: vsn === '2.0.0' ? 'binary3' : 'text' })

        const replyTo = () => inboundOn(a, cha.topic).find((m) => m.event === 'phx_reply' && m.ref === push.ref)
        if (ack) {
          const r = replyTo()
          if (!r) throw frameError(ctx, `no ack reply to ref ${push.ref}`)
          const expected =
            vsn === '2.0.0'
              ? [jr, push.ref, cha.topic, 'phx_reply', { status: 'ok', response: {} }]
              : { topic: cha.topic, event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: push.ref }
          expectMatch(wire(r), expected, 'ack reply')
        } else {
          await sleep(300)
          const r = replyTo()
          if (r) throw frameError(ctx, `ack=false but the server replied: ${r.raw.data}`)
        }
      })
    }
  }
}

test('[2.0.0] binary payload (ArrayBuffer) travels kind 3 enc 0 -> kind 4 enc 0 and arrives byte-identical', async (ctx) => {
  const topic = uniq('bin')
  const a = makeClient(ctx, { label: 'sender' })
  const b = makeClient(ctx, { label: 'receiver' })
  const cha = a.channel(topic, cfg({ self: true, ack: true }))
  const chb = b.channel(topic)
  const inA = new Inbox('sender')
  const inB = new Inbox('receiver')
  cha.on('broadcast', { event: 'blob' }, inA.push)
  chb.on('broadcast', { event: 'blob' }, inB.push)
  await subscribe(ctx, cha)
  await subscribe(ctx, chb)
  const data = bytes(1000)
  data[0] = 0
  data[1] = 0xff
  const res = await cha.send({ type: 'broadcast', event: 'blob', payload: data.buffer })
  expectTrue(res === 'ok', `send() resolved ${res}`)
  const got = await inB.wait(() => true, { ctx, what: 'binary broadcast' })
  expectTrue(got.payload instanceof ArrayBuffer, `payload is not an ArrayBuffer: ${Object.prototype.toString.call(got.payload)}`)
  expectTrue(Buffer.from(got.payload).equals(Buffer.from(data)), 'binary payload bytes differ')
  expectMatch({ type: got.type, event: got.event, hasMeta: 'meta' in got }, { type: 'broadcast', event: 'blob', hasMeta: false }, 'decoded broadcast')
  const own = await inA.wait(() => true, { ctx, what: 'own binary broadcast' })
  expectTrue(Buffer.from(own.payload).equals(Buffer.from(data)), 'self binary payload bytes differ')
  const push = lastBroadcastPush(a, cha.topic)
  expectMatch({ kind: push.kind, encoding: push.encoding }, { kind: 'bin3', encoding: 0 }, 'sent frame')
  const frame = inboundOn(b, chb.topic).find((m) => m.binary && m.bin === 4)
  expectMatch(
    { topic: frame.topic, userEvent: frame.userEvent, metadata: frame.metadata, encoding: frame.encoding, len: frame.payload.length },
    { topic: chb.topic, userEvent: 'blob', metadata: '', encoding: 0, len: 1000 },
    'kind 4 frame'
  )
})

test('v1 <-> v2 cross delivery: JSON both ways, binary never reaches v1', async (ctx) => {
  const topic = uniq('cross')
  const v1 = makeClient(ctx, { vsn: '1.0.0', label: 'v1' })
  const v2 = makeClient(ctx, { vsn: '2.0.0', label: 'v2' })
  const ch1 = v1.channel(topic)
  const ch2 = v2.channel(topic)
  const in1 = new Inbox('v1 callbacks')
  const in2 = new Inbox('v2 callbacks')
  ch1.on('broadcast', { event: '*' }, in1.push)
  ch2.on('broadcast', { event: '*' }, in2.push)
  await subscribe(ctx, ch1)
  await subscribe(ctx, ch2)

  // v1 -> v2: a JSON push, extra keys preserved; v2 gets a text frame.
  await ch1.send({ type: 'broadcast', event: 'from-v1', payload: { a: 1 }, extra: 'kept' })
  const g2 = await in2.wait((m) => m.event === 'from-v1', { ctx, what: 'v1 -> v2 message' })
  expectEqual(g2, { type: 'broadcast', event: 'from-v1', payload: { a: 1 }, extra: 'kept' }, 'v2 received')
  const f2 = inboundOn(v2, ch2.topic).find((m) => m.text && m.event === 'broadcast')
  expectMatch(f2.arr, [null, null, ch2.topic, 'broadcast', { type: 'broadcast', event: 'from-v1', payload: { a: 1 }, extra: 'kept' }], 'v2 frame')

  // v2 -> v1: kind 3 JSON becomes a v1 JSON object.
  await ch2.send({ type: 'broadcast', event: 'from-v2', payload: { b: [2] } })
  const g1 = await in1.wait((m) => m.event === 'from-v2', { ctx, what: 'v2 -> v1 message' })
  expectEqual(g1, { type: 'broadcast', event: 'from-v2', payload: { b: [2] } }, 'v1 received')
  const f1 = inboundOn(v1, ch1.topic).find((m) => m.event === 'broadcast' && m.payload.event === 'from-v2')
  expectMatch(f1.obj, { topic: ch1.topic, event: 'broadcast', payload: { event: 'from-v2', payload: { b: [2] }, type: 'broadcast' }, ref: null }, 'v1 frame')

  // v2 -> v1 with a string user payload (JSON "str").
  await ch2.send({ type: 'broadcast', event: 'str', payload: 'just a string' })
  const gs = await in1.wait((m) => m.event === 'str', { ctx, what: 'string payload' })
  expectEqual(gs, { type: 'broadcast', event: 'str', payload: 'just a string' }, 'v1 received string payload')

  // v2 binary: never delivered to v1; a JSON fence afterwards is.
  await ch2.send({ type: 'broadcast', event: 'bin', payload: bytes(16).buffer })
  await ch2.send({ type: 'broadcast', event: 'fence', payload: { f: 1 } })
  await in1.wait((m) => m.event === 'fence', { ctx, what: 'fence after binary' })
  await sleep(100)
  const leaked = in1.items.find((m) => m.event === 'bin')
  if (leaked) throw frameError(ctx, 'binary broadcast was delivered to a v1 socket')
  const anyBin = inboundOn(v1, ch1.topic).find((m) => m.raw.binary)
  if (anyBin) throw frameError(ctx, 'v1 socket received a binary frame')
})

test('[2.0.0] raw kind 3: metadata is not forwarded, ack reply is text, empty user payload ok', async (ctx) => {
  const topic = `realtime:${uniq('k3')}`
  const sender = await RawClient.connect({ ctx, label: 'sender' })
  const recv = await RawClient.connect({ ctx, label: 'receiver' })
  const { joinRef } = await sender.join(topic, { config: { broadcast: { ack: true, self: false } } })
  await recv.join(topic, { config: {} })
  const ref = sender.userBroadcast({ joinRef, topic, userEvent: 'meta', payload: { x: 1 }, metadata: '{"k":"v","replayed":true}' })
  await sender.reply(ref, [joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }])
  const m = await recv.waitFor((x) => x.binary && x.bin === 4 && x.userEvent === 'meta', { what: 'kind 4 for meta' })
  expectMatch(
    { topic: m.topic, metadata: m.metadata, encoding: m.encoding, payload: m.payload.toString() },
    { topic, metadata: '', encoding: 1, payload: '{"x":1}' },
    'kind 4 frame'
  )
  const ref2 = sender.userBroadcast({ joinRef, topic, userEvent: 'empty', payload: Buffer.alloc(0), encoding: 0 })
  await sender.reply(ref2, [joinRef, ref2, topic, 'phx_reply', { status: 'ok', response: {} }])
  const e = await recv.waitFor((x) => x.binary && x.bin === 4 && x.userEvent === 'empty', { what: 'kind 4 for empty' })
  expectMatch({ encoding: e.encoding, len: e.payload.length }, { encoding: 0, len: 0 }, 'empty binary payload')
})

test('[2.0.0] text-frame broadcast from a v2 socket is fanned out as text, payload map as sent', async (ctx) => {
  const topic = `realtime:${uniq('v2text')}`
  const sender = await RawClient.connect({ ctx, label: 'sender' })
  const recv2 = await RawClient.connect({ ctx, label: 'receiver-v2' })
  const recv1 = await RawClient.connect({ ctx, vsn: '1.0.0', label: 'receiver-v1' })
  const { joinRef } = await sender.join(topic)
  await recv2.join(topic)
  await recv1.join(topic)
  const payload = { type: 'broadcast', event: 'txt', payload: { deep: { list: [1, 'two'] } }, other: 3 }
  sender.send({ joinRef, topic, event: 'broadcast', payload })
  await recv2.waitForFrame([null, null, topic, 'broadcast', payload])
  await recv1.waitForFrame({ topic, event: 'broadcast', payload, ref: null })
})

test('[2.0.0] broadcasts stay on their topic; "*" listeners see every event in order', async (ctx) => {
  const t1 = uniq('iso')
  const t2 = uniq('iso')
  const a = makeClient(ctx, { label: 'sender' })
  const b = makeClient(ctx, { label: 'receiver' })
  const a1 = a.channel(t1)
  const b1 = b.channel(t1)
  const b2 = b.channel(t2)
  const in1 = new Inbox('t1')
  const in2 = new Inbox('t2')
  b1.on('broadcast', { event: '*' }, in1.push)
  b2.on('broadcast', { event: '*' }, in2.push)
  await subscribe(ctx, a1)
  await subscribe(ctx, b1)
  await subscribe(ctx, b2)
  for (let i = 0; i < 50; i++) {
    await a1.send({ type: 'broadcast', event: `e${i % 3}`, payload: { i } })
  }
  await until(() => in1.items.length >= 50, { ctx, what: '50 broadcasts', timeout: 5000 })
  expectEqual(
    in1.items.map((m) => m.payload.i),
    Array.from({ length: 50 }, (_, i) => i),
    'delivery order'
  )
  await sleep(200)
  expectTrue(in1.items.length === 50, `received ${in1.items.length} messages, expected exactly 50`)
  expectTrue(in2.items.length === 0, `other topic received ${in2.items.length} messages`)
})

for (const vsn of VSNS) {
  test(`[${vsn}] a 300 KB broadcast arrives intact`, async (ctx) => {
    const topic = uniq('big')
    const a = makeClient(ctx, { vsn, label: 'sender' })
    const b = makeClient(ctx, { vsn, label: 'receiver' })
    const cha = a.channel(topic, cfg({ ack: true }))
    const chb = b.channel(topic)
    const inB = new Inbox('receiver')
    chb.on('broadcast', { event: 'big' }, inB.push)
    await subscribe(ctx, cha)
    await subscribe(ctx, chb)
    const text = 'x'.repeat(300 * 1024)
    const res = await cha.send({ type: 'broadcast', event: 'big', payload: { text } })
    expectTrue(res === 'ok', `send() resolved ${res}`)
    const got = await inB.wait(() => true, { ctx, what: 'big broadcast', timeout: 5000 })
    expectTrue(got.payload.text === text, `payload differs (length ${got.payload.text?.length})`)
  })
}
