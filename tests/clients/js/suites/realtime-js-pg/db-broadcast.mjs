// Broadcast from Database through realtime-js: rows that `realtime.send()`
// and `realtime.send_binary()` insert into `realtime.messages` of the `pg`
// instance's database reach a public channel as broadcasts carrying
// `meta.id` (the row's id), with both serializers; a binary payload is an
// ArrayBuffer for vsn 2.0.0 and is not sent to vsn 1.0.0. Negative checks
// need no sleeps: rows go out in commit order, so a later JSON row that
// arrives proves the binary one before it was not sent.

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectEqual, expectTrue } from '../../lib/match.mjs'
import { pgClient, sql, messagesStreaming } from '../../lib/pg.mjs'
import { subscribe, Inbox } from '../../lib/rt.mjs'
import { uniq } from '../common.mjs'

const WAIT = { timeout: 8000 }

/** The id of the row `realtime.send()` stored for `topic` and `event`. */
async function rowId(topic, event) {
  const { rows } = await sql(
    `select id::text from realtime.messages where topic = $1 and event = $2 and extension = 'broadcast'`,
    [topic, event]
  )
  return rows[0]?.id
}

for (const vsn of ['2.0.0', '1.0.0']) {
  test(`[${vsn}] realtime.send() reaches a public channel with meta.id; send_binary is ${vsn === '2.0.0' ? 'an ArrayBuffer' : 'not sent'}`, async (ctx) => {
    const c = pgClient(ctx, vsn, `bfd-${vsn}`)
    const name = uniq('bfd')
    const channel = c.channel(name, { config: { private: false } })
    const inbox = new Inbox(`broadcasts of ${name}`)
    channel.on('broadcast', { event: '*' }, inbox.push)
    await subscribe(ctx, channel)
    await messagesStreaming(ctx)

    await sql(`select realtime.send($1::jsonb, 'from_db', $2, false)`, [JSON.stringify({ n: 1 }), name])
    const got = await inbox.wait((m) => m.event === 'from_db', { ctx, what: 'the realtime.send() broadcast', ...WAIT })
    const id = await rowId(name, 'from_db')
    expectTrue(typeof id === 'string', 'the row is stored')
    expectMatch(got, { type: 'broadcast', event: 'from_db', payload: { n: 1, id }, meta: { id } }, 'the realtime.send() broadcast')

    await sql(`select realtime.send_binary($1::bytea, 'bin', $2, false)`, [Buffer.from([1, 2, 255]), name])
    await sql(`select realtime.send('{}'::jsonb, 'after_bin', $1, false)`, [name])
    await inbox.wait((m) => m.event === 'after_bin', { ctx, what: 'the broadcast sent after the binary one', ...WAIT })
    const bins = inbox.items.filter((m) => m.event === 'bin')
    if (vsn === '2.0.0') {
      expectEqual(bins.length, 1, 'one binary broadcast')
      const p = bins[0].payload
      expectTrue(p instanceof ArrayBuffer, `binary payload is an ArrayBuffer (got ${Object.prototype.toString.call(p)})`)
      expectEqual([...new Uint8Array(p)], [1, 2, 255], 'binary payload bytes')
      expectEqual(bins[0].meta, { id: await rowId(name, 'bin') }, 'binary meta.id')
    } else {
      expectEqual(bins.length, 0, 'no binary broadcast for vsn 1.0.0')
    }
  })
}
