// Presence with realtime-js (sync/join/leave/update, abrupt disconnect) and
// the exact presence_state / presence_diff frames.

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectTrue, expectEqual } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox, until, currentSocket } from '../../lib/rt.mjs'
import { RawClient, sleep } from '../../lib/wire.mjs'
import { uniq, joinRefOf, inboundOn, PHX_REF, UUID_V1 } from '../common.mjs'

const VSNS = ['2.0.0', '1.0.0']

function presenceClient(ctx, topic, key, opts = {}) {
  const c = makeClient(ctx, { label: key, ...opts })
  const ch = c.channel(topic, { config: { presence: { key } } })
  const joins = new Inbox(`${key} join events`)
  const leaves = new Inbox(`${key} leave events`)
  const syncs = new Inbox(`${key} sync events`)
  ch.on('presence', { event: 'join' }, joins.push)
  ch.on('presence', { event: 'leave' }, leaves.push)
  ch.on('presence', { event: 'sync' }, () => syncs.push(Date.now()))
  return { c, ch, joins, leaves, syncs }
}

const strip = (list) => (list || []).map(({ presence_ref, ...rest }) => rest)

for (const vsn of VSNS) {
  test(`[${vsn}] presence: track/untrack seen by the other client as join/leave, state in sync`, async (ctx) => {
    const topic = uniq('pres')
    const A = presenceClient(ctx, topic, 'alice', { vsn })
    const B = presenceClient(ctx, topic, 'bob', { vsn })
    await subscribe(ctx, A.ch)
    await subscribe(ctx, B.ch)
    await B.syncs.wait(() => true, { ctx, what: 'initial sync (presence_state) on bob' })

    const r = await A.ch.track({ user: 'alice', n: 1 })
    expectTrue(r === 'ok', `track() resolved ${r}`)
    const j = await B.joins.wait((e) => e.key === 'alice', { ctx, what: 'join of alice on bob' })
    expectEqual(strip(j.newPresences), [{ user: 'alice', n: 1 }], 'newPresences')
    expectMatch(j.newPresences[0].presence_ref, PHX_REF, 'presence_ref')
    await A.joins.wait((e) => e.key === 'alice', { ctx, what: 'alice sees her own join' })

    await B.ch.track({ user: 'bob' })
    await A.joins.wait((e) => e.key === 'bob', { ctx, what: 'join of bob on alice' })
    await until(() => Object.keys(A.ch.presenceState()).length === 2 && Object.keys(B.ch.presenceState()).length === 2, {
      ctx,
      what: 'both states to hold alice and bob',
    })
    expectEqual(strip(B.ch.presenceState().alice), [{ user: 'alice', n: 1 }], "bob's view of alice")
    expectEqual(strip(A.ch.presenceState().bob), [{ user: 'bob' }], "alice's view of bob")

    const u = await A.ch.untrack()
    expectTrue(u === 'ok', `untrack() resolved ${u}`)
    const l = await B.leaves.wait((e) => e.key === 'alice', { ctx, what: 'leave of alice on bob' })
    expectEqual(strip(l.leftPresences), [{ user: 'alice', n: 1 }], 'leftPresences')
    await until(() => !('alice' in B.ch.presenceState()), { ctx, what: 'alice gone from bob state' })
    expectEqual(Object.keys(B.ch.presenceState()), ['bob'], 'bob state keys')
  })

  test(`[${vsn}] presence: abrupt disconnect (socket terminated) is a leave for the others`, async (ctx) => {
    const topic = uniq('abrupt')
    const A = presenceClient(ctx, topic, 'alice', { vsn, reconnectAfterMs: () => 60000 })
    const B = presenceClient(ctx, topic, 'bob', { vsn })
    await subscribe(ctx, A.ch)
    await subscribe(ctx, B.ch)
    await A.ch.track({ user: 'alice' })
    await B.joins.wait((e) => e.key === 'alice', { ctx, what: 'join of alice' })
    currentSocket(A.c).terminate()
    const l = await B.leaves.wait((e) => e.key === 'alice', { ctx, what: 'leave of alice after terminate', timeout: 5000 })
    expectEqual(strip(l.leftPresences), [{ user: 'alice' }], 'leftPresences')
    await until(() => Object.keys(B.ch.presenceState()).length === 0, { ctx, what: 'empty state on bob' })
  })

  test(`[${vsn}] presence: leaving the channel is a leave for the others`, async (ctx) => {
    const topic = uniq('pleave')
    const A = presenceClient(ctx, topic, 'alice', { vsn })
    const B = presenceClient(ctx, topic, 'bob', { vsn })
    await subscribe(ctx, A.ch)
    await subscribe(ctx, B.ch)
    await A.ch.track({ user: 'alice' })
    await B.joins.wait((e) => e.key === 'alice', { ctx, what: 'join of alice' })
    await A.ch.unsubscribe()
    await B.leaves.wait((e) => e.key === 'alice', { ctx, what: 'leave of alice after unsubscribe' })
  })

  test(`[${vsn}] presence: a late joiner gets the current state in presence_state`, async (ctx) => {
    const topic = uniq('late')
    const A = presenceClient(ctx, topic, 'alice', { vsn })
    await subscribe(ctx, A.ch)
    await A.ch.track({ user: 'alice', role: 'host' })
    await A.joins.wait((e) => e.key === 'alice', { ctx, what: 'own join' })
    const C = presenceClient(ctx, topic, 'carol', { vsn })
    await subscribe(ctx, C.ch)
    await C.syncs.wait(() => true, { ctx, what: 'sync on carol' })
    expectEqual(strip(C.ch.presenceState().alice), [{ user: 'alice', role: 'host' }], "carol's view of alice")
    const st = inboundOn(C.c, C.ch.topic).find((m) => m.event === 'presence_state')
    const jr = joinRefOf(C.ch)
    const metas = { alice: { metas: [{ phx_ref: PHX_REF, user: 'alice', role: 'host' }] } }
    if (vsn === '2.0.0') expectMatch(st.arr, [jr, null, C.ch.topic, 'presence_state', metas], 'presence_state frame')
    else expectMatch(st.obj, { topic: C.ch.topic, event: 'presence_state', payload: metas, ref: null }, 'presence_state frame')
  })

  test(`[${vsn}] presence update: tracking a new payload replaces the meta (phx_ref_prev, old meta in leaves)`, async (ctx) => {
    const topic = uniq('upd')
    const A = presenceClient(ctx, topic, 'alice', { vsn })
    const B = presenceClient(ctx, topic, 'bob', { vsn })
    await subscribe(ctx, A.ch)
    await subscribe(ctx, B.ch)
    await A.ch.track({ status: 'online' })
    await B.joins.wait((e) => e.key === 'alice', { ctx, what: 'first join' })
    await A.ch.track({ status: 'away' })
    await until(() => inboundOn(B.c, B.ch.topic).filter((m) => m.event === 'presence_diff').length >= 2, { ctx, what: 'second presence_diff' })
    // realtime-js 2.109 (@supabase/phoenix 0.4.4) strips phx_ref from the current metas
    // inside its onJoin hook before applying the diff's leaves, so its local state keeps the
    // old meta after an update (client-side quirk). Check what it can show: the join of the
    // new meta, the leave of the old one, and the new meta in the state.
    const j2 = await B.joins.wait((e) => e.key === 'alice' && e.newPresences.some((p) => p.status === 'away'), { ctx, what: 'join with the new meta' })
    expectEqual(strip(j2.newPresences), [{ status: 'away' }], 'newPresences of the update')
    const l2 = await B.leaves.wait((e) => e.key === 'alice', { ctx, what: 'leave of the old meta' })
    expectEqual(strip(l2.leftPresences), [{ status: 'online' }], 'leftPresences of the update')
    await until(() => (B.ch.presenceState().alice || []).some((p) => p.status === 'away'), { ctx, what: "bob's state to show away" })
    const diffs = inboundOn(B.c, B.ch.topic).filter((m) => m.event === 'presence_diff')
    const first = diffs[0].payload.joins.alice.metas[0]
    const second = diffs[1]
    const expectedDiff = {
      joins: { alice: { metas: [{ phx_ref: PHX_REF, phx_ref_prev: first.phx_ref, status: 'away' }] } },
      leaves: { alice: { metas: [{ phx_ref: first.phx_ref, status: 'online' }] } },
    }
    if (vsn === '2.0.0') expectMatch(second.arr, [null, null, B.ch.topic, 'presence_diff', expectedDiff], 'update diff')
    else expectMatch(second.obj, { topic: B.ch.topic, event: 'presence_diff', payload: expectedDiff, ref: null }, 'update diff')
    expectTrue(second.payload.joins.alice.metas[0].phx_ref !== first.phx_ref, 'update must get a new phx_ref')
  })
}

test('[2.0.0] presence frames: presence_state is a channel push, presence_diff is fan-out, replies exact', async (ctx) => {
  const topic = `realtime:${uniq('pframes')}`
  const a = await RawClient.connect({ ctx, label: 'alice' })
  const b = await RawClient.connect({ ctx, label: 'bob' })
  const ja = await a.join(topic, { config: { presence: { key: 'alice', enabled: true } } })
  await a.waitForFrame([ja.joinRef, null, topic, 'presence_state', {}])
  const jb = await b.join(topic, { config: { presence: { key: 'bob', enabled: true } } })
  await b.waitForFrame([jb.joinRef, null, topic, 'presence_state', {}])
  const ref = a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { user: 'a' } } })
  await a.reply(ref, [ja.joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }])
  const diff = [null, null, topic, 'presence_diff', { joins: { alice: { metas: [{ phx_ref: PHX_REF, user: 'a' }] } }, leaves: {} }]
  await b.waitForFrame(diff, { what: 'presence_diff on bob' })
  await a.waitForFrame(diff, { what: 'presence_diff on alice (sender sees its own diff)' })
  const ref2 = a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'untrack' } })
  await a.reply(ref2, [ja.joinRef, ref2, topic, 'phx_reply', { status: 'ok', response: {} }])
  await b.waitForFrame([null, null, topic, 'presence_diff', { joins: {}, leaves: { alice: { metas: [{ phx_ref: PHX_REF, user: 'a' }] } } }], {
    what: 'leave diff on bob',
  })
})

test('[2.0.0] presence: tracking the same payload twice is a no-op (ok reply, no diff)', async (ctx) => {
  const topic = `realtime:${uniq('same')}`
  const a = await RawClient.connect({ ctx, label: 'alice' })
  const b = await RawClient.connect({ ctx, label: 'bob' })
  const ja = await a.join(topic, { config: { presence: { key: 'alice', enabled: true } } })
  await b.join(topic, { config: { presence: { key: 'bob', enabled: true } } })
  const track = () => a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { same: 1 } } })
  const r1 = track()
  await a.reply(r1, [ja.joinRef, r1, topic, 'phx_reply', { status: 'ok', response: {} }])
  await b.waitFor((m) => m.event === 'presence_diff', { what: 'first diff' })
  const r2 = track()
  await a.reply(r2, [ja.joinRef, r2, topic, 'phx_reply', { status: 'ok', response: {} }])
  await sleep(400)
  const n = b.messages.filter((m) => m.event === 'presence_diff').length
  if (n !== 1) {
    const e = new Error(`expected exactly one presence_diff, saw ${n}`)
    e.frames = b.dump()
    throw e
  }
})

test('[2.0.0] presence: empty key gets a server-generated UUID v1', async (ctx) => {
  const topic = `realtime:${uniq('uuid')}`
  const a = await RawClient.connect({ ctx })
  const ja = await a.join(topic, { config: { presence: { key: '', enabled: true } } })
  a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { x: 1 } } })
  const d = await a.waitFor((m) => m.event === 'presence_diff', { what: 'presence_diff' })
  const keys = Object.keys(d.payload.joins)
  expectTrue(keys.length === 1, `joins keys ${JSON.stringify(keys)}`)
  expectMatch(keys[0], UUID_V1, 'generated presence key')
})

test('[2.0.0] presence: event name is case-insensitive (TRACK)', async (ctx) => {
  const topic = `realtime:${uniq('upper')}`
  const a = await RawClient.connect({ ctx })
  const ja = await a.join(topic, { config: { presence: { key: 'k', enabled: true } } })
  const ref = a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'TRACK', payload: { up: true } } })
  await a.reply(ref, [ja.joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }])
  await a.waitForFrame([null, null, topic, 'presence_diff', { joins: { k: { metas: [{ phx_ref: PHX_REF, up: true }] } }, leaves: {} }])
})

test('[2.0.0] presence: non-map track payload is an error reply; payload without event is a no-op ok', async (ctx) => {
  const topic = `realtime:${uniq('bad')}`
  const a = await RawClient.connect({ ctx })
  const ja = await a.join(topic, { config: { presence: { key: 'k', enabled: true } } })
  const ref = a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: 'nope' } })
  await a.reply(ref, [ja.joinRef, ref, topic, 'phx_reply', { status: 'error', response: { reason: 'Presence track payload must be a map' } }])
  const ref2 = a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence' } })
  await a.reply(ref2, [ja.joinRef, ref2, topic, 'phx_reply', { status: 'ok', response: {} }])
  expectTrue(a.isOpen, 'socket closed')
})

test('[2.0.0] presence: subscribers without presence get diffs but no presence_state; first track auto-enables', async (ctx) => {
  const topic = `realtime:${uniq('noprs')}`
  const plain = await RawClient.connect({ ctx, label: 'no-presence' })
  const tracker = await RawClient.connect({ ctx, label: 'tracker' })
  const jp = await plain.join(topic, { config: { presence: { enabled: false } } })
  const jt = await tracker.join(topic, { config: { presence: { key: 'late', enabled: false } } })
  const ref = tracker.send({ joinRef: jt.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { a: 1 } } })
  await tracker.reply(ref, [jt.joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }])
  const diff = [null, null, topic, 'presence_diff', { joins: { late: { metas: [{ phx_ref: PHX_REF, a: 1 }] } }, leaves: {} }]
  await plain.waitForFrame(diff, { what: 'diff on the subscriber without presence' })
  await tracker.waitForFrame(diff, { what: 'diff on the tracker' })
  await plain.expectNone((m) => m.event === 'presence_state', 100, 'presence_state sent although presence was disabled')
  await tracker.expectNone((m) => m.event === 'presence_state', 0, 'presence_state pushed on auto-enable')
  expectTrue(jp.joinRef !== undefined, 'joined')
})


test('[2.0.0] presence: a numeric key is stringified', async (ctx) => {
  const topic = `realtime:${uniq('numkey')}`
  const a = await RawClient.connect({ ctx })
  const ja = await a.join(topic, { config: { presence: { key: 42, enabled: true } } })
  a.send({ joinRef: ja.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { n: 1 } } })
  await a.waitForFrame([null, null, topic, 'presence_diff', { joins: { 42: { metas: [{ phx_ref: PHX_REF, n: 1 }] } }, leaves: {} }])
})
