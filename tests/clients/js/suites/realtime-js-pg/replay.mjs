// realtime-js joining a private channel with `broadcast.replay` on the `pg`
// instance (under the policies of lib/private.mjs): the messages stored
// with `realtime.send()` and `realtime.send_binary()` reach the channel's
// `broadcast` callbacks right after it subscribes, oldest first, each with `meta.replayed` and
// `meta.id`; binary payloads as bytes on vsn 2.0.0 and not at all on vsn
// 1.0.0; nothing stored before `since`. Replay order is the wire order, so
// the last message arriving proves what came (or not) before it.

import { test } from '../../lib/harness.mjs'
import { expectEqual, expectMatch, expectTrue } from '../../lib/match.mjs'
import { sql } from '../../lib/pg.mjs'
import { subscribe, Inbox } from '../../lib/rt.mjs'
import { privateReady, newSub, topicFor, userClient } from '../../lib/private.mjs'

const WAIT = { timeout: 8000 }

for (const vsn of ['2.0.0', '1.0.0']) {
  test(`[${vsn}] private channel with broadcast.replay {since, limit}: stored messages oldest first with meta.replayed and meta.id`, async (ctx) => {
    await privateReady(ctx)
    const sub = newSub()
    const topic = topicFor(sub, 'ro')
    const send = (event, payload) => sql(`select realtime.send($1::jsonb, $2, $3, true)`, [JSON.stringify(payload), event, topic])
    await send('old', { n: 0 })
    // An hour before `since`: not replayed.
    await sql(`update realtime.messages set inserted_at = inserted_at - interval '1 hour' where topic = $1`, [topic])
    const since = Date.now() - 60000
    await send('first', { n: 1 })
    await sql(`select realtime.send_binary($1::bytea, 'bin', $2, true)`, [Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]), topic])
    await send('last', { n: 3 })
    const { rows } = await sql(
      `select id::text, event from realtime.messages where topic = $1 and inserted_at >= now() - interval '1 minute' order by inserted_at`,
      [topic]
    )
    const id = Object.fromEntries(rows.map((r) => [r.event, r.id]))

    const client = await userClient(ctx, vsn, sub)
    const channel = client.channel(topic, { config: { private: true, broadcast: { replay: { since, limit: 10 } } } })
    const inbox = new Inbox(`broadcasts on ${topic}`)
    channel.on('broadcast', { event: '*' }, inbox.push)
    await subscribe(ctx, channel, 10000)
    await inbox.wait((m) => m.event === 'last', { ctx, what: 'the last replayed message', ...WAIT })

    expectEqual(
      inbox.items.map((m) => m.event),
      vsn === '2.0.0' ? ['first', 'bin', 'last'] : ['first', 'last'],
      'replayed events in order (none before since; binary only on 2.0.0)'
    )
    expectMatch(
      inbox.items[0],
      { type: 'broadcast', event: 'first', payload: { n: 1, id: id.first }, meta: { id: id.first, replayed: true } },
      'a replayed JSON message'
    )
    if (vsn === '2.0.0') {
      const bin = inbox.items[1]
      expectEqual(bin.meta, { id: id.bin, replayed: true }, 'the binary message meta')
      expectTrue(bin.payload instanceof ArrayBuffer, `binary payload as an ArrayBuffer, got ${typeof bin.payload}`)
      expectEqual([...new Uint8Array(bin.payload)], [0xde, 0xad, 0xbe, 0xef, 0x00, 0xff], 'binary payload bytes')
    }
  })
}
