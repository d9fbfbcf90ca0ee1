// realtime-js clients spread over the nodes of a cluster (a nats-server and
// three servers, started by `scripts/cluster up 3`; their ports in
// RT_CLUSTER_PORTS): every broadcast reaches every other node's clients
// once and in each sender's order, in both serializers; REST on one node
// reaches all; a topic name holding NATS wildcards or separators reaches
// only its own subscribers.

import { test } from '../../lib/harness.mjs'
import { expectEqual, expectTrue } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox } from '../../lib/rt.mjs'
import { httpRequest } from '../../lib/wire.mjs'
import { token as mintToken } from '../../lib/jwt.mjs'
import { DEFAULT_SECRET } from '../../lib/config.mjs'
import { uniq } from '../common.mjs'

const PORTS = (process.env.RT_CLUSTER_PORTS || '').split(',').filter(Boolean).map(Number)

function node(i) {
  if (PORTS.length < 3) throw new Error(`RT_CLUSTER_PORTS names ${PORTS.length} nodes; scripts/cluster up 3 gives three`)
  return { name: `node-${i}`, port: PORTS[i], host: '127.0.0.1', secret: DEFAULT_SECRET, tenant: 'realtime-dev' }
}

test('broadcasts from every node reach realtime-js clients on every other node once, in order, v1 and v2', async (ctx) => {
  const topic = uniq('cluster')
  const n = 40
  const members = []
  for (let i = 0; i < 3; i++) {
    for (const vsn of ['2.0.0', '1.0.0']) {
      const client = makeClient(ctx, { instance: node(i), vsn, label: `node-${i}-${vsn}` })
      const channel = client.channel(topic, { config: { broadcast: { self: false, ack: true } } })
      const inbox = new Inbox(`node-${i}-${vsn}`)
      channel.on('broadcast', { event: 'seq' }, inbox.push)
      members.push({ node: i, vsn, client, channel, inbox })
    }
  }
  for (const m of members) await subscribe(ctx, m.channel)
  // One v2 sender per node, interleaved.
  const senders = members.filter((m) => m.vsn === '2.0.0')
  for (let k = 0; k < n; k++) {
    for (const s of senders) {
      const res = await s.channel.send({ type: 'broadcast', event: 'seq', payload: { from: s.node, k } })
      expectTrue(res === 'ok', `send from node ${s.node} resolved '${res}'`)
    }
  }
  for (const m of members) {
    const want = senders.filter((s) => s.node !== m.node || m.vsn !== '2.0.0').length * n
    await m.inbox.wait(() => m.inbox.items.length >= want, { ctx, what: `${want} broadcasts`, timeout: 10000 })
    for (const s of senders) {
      const got = m.inbox.items.filter((x) => x.payload.from === s.node).map((x) => x.payload.k)
      const expected = s.node === m.node && m.vsn === '2.0.0' ? [] : [...Array(n).keys()]
      expectEqual(got, expected, `${m.inbox.label}: what node ${s.node} sent, once and in order`)
    }
  }
  // A last message from node 2 after everything: had any copy come twice
  // it would be counted before it.
  await senders[2].channel.send({ type: 'broadcast', event: 'seq', payload: { from: 9, k: 0 } })
  for (const m of members.filter((x) => x.node !== 2 || x.vsn !== '2.0.0')) {
    await m.inbox.wait((x) => x.payload.from === 9, { ctx, what: 'the last message' })
    const want = senders.filter((s) => s.node !== m.node || m.vsn !== '2.0.0').length * n + 1
    expectEqual(m.inbox.items.length, want, `${m.inbox.label}: nothing twice`)
  }
})

test('REST broadcast on one node reaches realtime-js clients on the other two', async (ctx) => {
  const sub = uniq('cluster-rest')
  const inboxes = []
  for (const i of [1, 2]) {
    const client = makeClient(ctx, { instance: node(i), label: `node-${i}` })
    const channel = client.channel(sub)
    const inbox = new Inbox(`node-${i}`)
    channel.on('broadcast', { event: 'rest' }, inbox.push)
    await subscribe(ctx, channel)
    inboxes.push(inbox)
  }
  const res = await httpRequest({
    instance: node(0),
    method: 'POST',
    path: '/api/broadcast',
    headers: { 'Content-Type': 'application/json', apikey: mintToken({}, { secret: DEFAULT_SECRET }) },
    body: { messages: [{ topic: sub, event: 'rest', payload: { via: 'node-0' } }] },
  })
  expectEqual(res.status, 202, 'REST status')
  for (const inbox of inboxes) {
    const got = await inbox.wait(() => true, { ctx, what: 'the REST broadcast' })
    expectEqual(got, { type: 'broadcast', event: 'rest', payload: { via: 'node-0' } }, inbox.label)
  }
})

test('topic names with NATS wildcards and separators reach only their own subscribers across nodes', async (ctx) => {
  const base = uniq('wild')
  const names = [base, `${base}.*`, `${base}.>`, `${base}.a`, `${base} x`, `_${base}`]
  const subs = []
  for (const name of names) {
    const client = makeClient(ctx, { instance: node(1), label: `sub ${name}` })
    const channel = client.channel(name)
    const inbox = new Inbox(`sub ${name}`)
    channel.on('broadcast', { event: 'w' }, inbox.push)
    await subscribe(ctx, channel)
    subs.push({ name, inbox })
  }
  const pub = makeClient(ctx, { instance: node(0), label: 'publisher' })
  const pubChannels = []
  for (const name of names) {
    const channel = pub.channel(name, { config: { broadcast: { ack: true } } })
    await subscribe(ctx, channel)
    pubChannels.push(channel)
  }
  for (const round of [0, 1]) {
    for (let i = 0; i < names.length; i++) {
      await pubChannels[i].send({ type: 'broadcast', event: 'w', payload: { name: names[i], round } })
    }
  }
  for (const s of subs) {
    await s.inbox.wait((x) => x.payload.round === 1, { ctx, what: 'its own last message' })
    expectEqual(
      s.inbox.items.map((x) => x.payload),
      [{ name: s.name, round: 0 }, { name: s.name, round: 1 }],
      `${s.name}: its own messages only`
    )
  }
})
