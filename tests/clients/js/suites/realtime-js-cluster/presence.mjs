// Presence with realtime-js clients on three nodes of a cluster (see
// broadcast.mjs): each client's presenceState() becomes the union of every
// node's tracks, with the same metas and refs; an update and an untrack on
// one node are seen on the others; a client whose socket is cut off leaves
// every node's view.

import { test } from '../../lib/harness.mjs'
import { expectEqual } from '../../lib/match.mjs'
import { makeClient, subscribe, until, currentSocket } from '../../lib/rt.mjs'
import { DEFAULT_SECRET } from '../../lib/config.mjs'
import { uniq } from '../common.mjs'

const PORTS = (process.env.RT_CLUSTER_PORTS || '').split(',').filter(Boolean).map(Number)

function node(i) {
  if (PORTS.length < 3) throw new Error(`RT_CLUSTER_PORTS names ${PORTS.length} nodes; scripts/cluster up 3 gives three`)
  return { name: `node-${i}`, port: PORTS[i], host: '127.0.0.1', secret: DEFAULT_SECRET, tenant: 'realtime-dev' }
}

/** A client's view as key -> metas (refs kept, sorted keys). */
function view(channel) {
  const state = channel.presenceState()
  return Object.fromEntries(Object.keys(state).sort().map((k) => [k, state[k]]))
}

const keysOf = (channel) => Object.keys(channel.presenceState()).sort()

test('presence is one view across nodes for realtime-js clients, v1 and v2', async (ctx) => {
  const topic = uniq('cluster-pres')
  const members = []
  for (let i = 0; i < 3; i++) {
    const vsn = i === 1 ? '1.0.0' : '2.0.0'
    const client = makeClient(ctx, { instance: node(i), vsn, label: `node-${i}`, reconnectAfterMs: () => 60000 })
    const channel = client.channel(topic, { config: { presence: { key: `user-${i}` } } })
    // A presence listener before subscribing, as apps do: the join then
    // asks for presence, and realtime-js applies diffs after its state.
    channel.on('presence', { event: 'sync' }, () => {})
    members.push({ client, channel })
  }
  for (const m of members) await subscribe(ctx, m.channel)
  for (let i = 0; i < 3; i++) await members[i].channel.track({ node: i })
  const all = ['user-0', 'user-1', 'user-2']
  for (const m of members) {
    await until(() => expectKeys(m.channel, all), { ctx, what: 'every node in the view', timeout: 10000 })
  }
  expectEqual(view(members[1].channel), view(members[0].channel), 'node 1 sees what node 0 sees, refs included')
  expectEqual(view(members[2].channel), view(members[0].channel), 'node 2 sees what node 0 sees, refs included')

  // An update on node 0 reaches the others (realtime-js may keep the old
  // meta beside the new one after an update: a client-side quirk, the
  // same on one node).
  await members[0].channel.track({ node: 0, status: 'away' })
  for (const m of members.slice(1)) {
    await until(() => (m.channel.presenceState()['user-0'] || []).some((p) => p.status === 'away'), {
      ctx,
      what: 'the update from node 0',
      timeout: 10000,
    })
  }
  // An untrack on node 1.
  await members[1].channel.untrack()
  for (const m of [members[0], members[2]]) {
    await until(() => expectKeys(m.channel, ['user-0', 'user-2']), { ctx, what: 'the untrack on node 1', timeout: 10000 })
  }
  // Node 2's socket cut off: it leaves the others' views.
  currentSocket(members[2].client).terminate()
  for (const m of [members[0], members[1]]) {
    await until(() => expectKeys(m.channel, ['user-0']), { ctx, what: 'node 2 gone', timeout: 10000 })
  }
  expectEqual(view(members[1].channel), view(members[0].channel), 'the same view on node 0 and node 1 at the end')
})

function expectKeys(channel, keys) {
  return JSON.stringify(keysOf(channel)) === JSON.stringify(keys)
}
