// Private channels (`config.private: true`) with realtime-js, both
// serializers, against the policies of lib/private.mjs on the `pg`
// instance's database: the join's read check, the write check on the first
// broadcast and the first track, presence, a refreshed token that loses the
// right, and private and public topics of one name kept apart.

import { test } from '../../lib/harness.mjs'
import { expectEqual, expectTrue } from '../../lib/match.mjs'
import { Inbox, subscribe, subscribeOutcome } from '../../lib/rt.mjs'
import { privateReady, newSub, topicFor, userClient, userToken } from '../../lib/private.mjs'
import { sql } from '../../lib/pg.mjs'
import { randomBytes } from 'node:crypto'

const VSNS = ['2.0.0', '1.0.0']
const refused = (topic) => `Unauthorized: You do not have permissions to read from this Channel topic: ${topic}`

for (const vsn of VSNS) {
  test(`[${vsn}] private join: the user the policy names joins, another is refused with the exact reason`, async (ctx) => {
    await privateReady(ctx)
    const owner = newSub()
    const topic = topicFor(owner, 'ro')
    const a = await userClient(ctx, vsn, owner)
    await subscribe(ctx, a.channel(topic, { config: { private: true } }), 10000)

    const b = await userClient(ctx, vsn, newSub())
    const denied = b.channel(topic, { config: { private: true } })
    const { status, err } = await subscribeOutcome(denied, 10000)
    expectEqual(status, 'CHANNEL_ERROR', 'status of the refused join')
    expectEqual(err && err.message, refused(topic), 'reason of the refused join')
    await b.removeChannel(denied)
  })

  test(`[${vsn}] private broadcast: delivered between readers when the sender may write, acked`, async (ctx) => {
    await privateReady(ctx)
    const sub = newSub()
    const topic = topicFor(sub, 'rw')
    const rx = await userClient(ctx, vsn, sub)
    const inbox = new Inbox('private broadcasts')
    const rch = rx.channel(topic, { config: { private: true } }).on('broadcast', { event: 'hi' }, inbox.push)
    await subscribe(ctx, rch, 10000)
    const tx = await userClient(ctx, vsn, sub)
    const tch = tx.channel(topic, { config: { private: true, broadcast: { ack: true } } })
    await subscribe(ctx, tch, 10000)
    const r = await tch.send({ type: 'broadcast', event: 'hi', payload: { n: 1 } })
    expectEqual(r, 'ok', 'send with ack on a writable private topic')
    const got = await inbox.wait(() => true, { ctx, timeout: 5000, what: 'the private broadcast' })
    expectEqual(got.payload, { n: 1 }, 'payload')
  })

  test(`[${vsn}] private broadcast without the write right: dropped, and no ack even with ack: true`, async (ctx) => {
    await privateReady(ctx)
    const sub = newSub()
    const topic = topicFor(sub, 'ro')
    const rx = await userClient(ctx, vsn, sub)
    const inbox = new Inbox('private broadcasts')
    await subscribe(ctx, rx.channel(topic, { config: { private: true } }).on('broadcast', { event: '*' }, inbox.push), 10000)
    // A short push timeout: the missing ack is what is tested.
    const tx = await userClient(ctx, vsn, sub, { timeout: 1500 })
    const tch = tx.channel(topic, { config: { private: true, broadcast: { ack: true } } })
    await subscribe(ctx, tch, 10000)
    const r = await tch.send({ type: 'broadcast', event: 'nope', payload: {} })
    expectEqual(r, 'timed out', 'send on a read-only private topic')
    // Had the server let it through, it would have reached the reader well
    // within the 1.5 s the sender waited for its ack.
    await inbox.none(() => true, 0, 'no broadcast from a sender without the write right')
  })

  test(`[${vsn}] presence on a private channel: track with the write right, the join reaches the others`, async (ctx) => {
    await privateReady(ctx)
    const sub = newSub()
    const topic = topicFor(sub, 'rw')
    const key = newSub()
    const watcher = await userClient(ctx, vsn, sub)
    const joins = new Inbox('presence joins')
    await subscribe(ctx, watcher.channel(topic, { config: { private: true } }).on('presence', { event: 'join' }, joins.push), 10000)
    const me = await userClient(ctx, vsn, sub)
    const ch = me.channel(topic, { config: { private: true, presence: { key } } })
    await subscribe(ctx, ch, 10000)
    const r = await ch.track({ message: 'here' })
    expectEqual(r, 'ok', 'track on a writable private topic')
    const j = await joins.wait((e) => e.key === key, { ctx, timeout: 5000, what: `the presence join of ${key}` })
    expectEqual(j.newPresences[0].message, 'here', 'tracked state')
  })

  test(`[${vsn}] access_token for a user without the right: the private channel is shut with the exact message`, async (ctx) => {
    await privateReady(ctx)
    const sub = newSub()
    const topic = topicFor(sub, 'ro')
    const c = await userClient(ctx, vsn, sub)
    const system = new Inbox('system')
    const statuses = []
    const ch = c.channel(topic, { config: { private: true } }).on('system', {}, system.push)
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no SUBSCRIBED')), 10000)
      ch.subscribe((s) => {
        statuses.push(s)
        if (s === 'SUBSCRIBED') {
          clearTimeout(t)
          resolve()
        }
      })
    })
    await c.setAuth(userToken(newSub()))
    const msg = await system.wait((m) => m.status === 'error', { ctx, timeout: 5000, what: 'the shutdown system message' })
    // Both reads lost: the join's refusal text (the `no longer` text is for
    // one of broadcast and presence read lost while the other stays).
    expectEqual(msg.message, `You do not have permissions to read from this Channel topic: ${topic}`, 'shutdown message')
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`channel not closed: ${JSON.stringify(statuses)}`)), 5000)
      const check = setInterval(() => {
        if (statuses.includes('CLOSED')) {
          clearInterval(check)
          clearTimeout(t)
          resolve()
        }
      }, 20)
    })
  })

  test(`[${vsn}] private and public channels of one name never see each other's broadcasts`, async (ctx) => {
    await privateReady(ctx)
    const sub = newSub()
    const topic = topicFor(sub, 'rw')
    const c = await userClient(ctx, vsn, sub)
    const priv = new Inbox('private')
    const pub = new Inbox('public')
    const pch = c.channel(topic, { config: { private: true, broadcast: { self: true, ack: true } } }).on('broadcast', { event: '*' }, priv.push)
    await subscribe(ctx, pch, 10000)
    const other = await userClient(ctx, vsn, sub)
    const uch = other.channel(topic, { config: { broadcast: { self: true, ack: true } } }).on('broadcast', { event: '*' }, pub.push)
    await subscribe(ctx, uch, 10000)
    expectEqual(await pch.send({ type: 'broadcast', event: 'p', payload: { from: 'private' } }), 'ok', 'private send')
    expectEqual(await uch.send({ type: 'broadcast', event: 'u', payload: { from: 'public' } }), 'ok', 'public send')
    await priv.wait((m) => m.event === 'p', { ctx, what: 'the private broadcast on the private channel' })
    await pub.wait((m) => m.event === 'u', { ctx, what: 'the public broadcast on the public channel' })
    expectTrue(!priv.items.some((m) => m.event === 'u'), 'the private channel got the public broadcast')
    expectTrue(!pub.items.some((m) => m.event === 'p'), 'the public channel got the private broadcast')
  })

  test(`[${vsn}] broadcast_changes() from a trigger reaches a private channel with meta.id, once replication_ready said so`, async (ctx) => {
    await privateReady(ctx)
    const sub = newSub()
    // Fresh names of hex and letters only: safe inside the SQL below.
    const topic = topicFor(sub, 'ro')
    const table = `rtjs_bc_${randomBytes(4).toString('hex')}`
    await sql(`create table public.${table} (id int primary key, value text)`)
    ctx.defer(() => sql(`drop table if exists public.${table}`))
    await sql(`create function public.${table}_fn() returns trigger language plpgsql security definer as $f$
      begin
        perform realtime.broadcast_changes('${topic}', TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, OLD);
        return null;
      end $f$`)
    ctx.defer(() => sql(`drop function if exists public.${table}_fn() cascade`))
    await sql(`create trigger ${table}_tr after insert or update or delete on public.${table}
      for each row execute function public.${table}_fn()`)

    const c = await userClient(ctx, vsn, sub)
    const inbox = new Inbox('broadcast changes')
    const system = new Inbox('system')
    const ch = c
      .channel(topic, { config: { private: true, broadcast: { replication_ready: true } } })
      .on('broadcast', { event: '*' }, inbox.push)
      .on('system', {}, system.push)
    await subscribe(ctx, ch, 10000)
    const ready = await system.wait((m) => m.extension === 'system', { ctx, timeout: 10000, what: 'replication ready' })
    expectEqual([ready.status, ready.message], ['ok', 'Replication connection established'], 'replication_ready system message')

    await sql(`insert into public.${table} values (1, 'a')`)
    await sql(`update public.${table} set value = 'b' where id = 1`)
    await sql(`delete from public.${table} where id = 1`)
    const { rows } = await sql(`select event, id::text from realtime.messages where topic = $1 order by inserted_at`, [topic])
    const ids = Object.fromEntries(rows.map((r) => [r.event, r.id]))
    const want = {
      INSERT: [{ id: 1, value: 'a' }, null],
      UPDATE: [{ id: 1, value: 'b' }, { id: 1, value: 'a' }],
      DELETE: [null, { id: 1, value: 'b' }],
    }
    for (const [op, [record, old]] of Object.entries(want)) {
      const m = await inbox.wait((x) => x.event === op, { ctx, timeout: 8000, what: `the ${op} broadcast` })
      expectEqual(m.meta, { id: ids[op] }, `${op} meta.id is the row's id`)
      expectEqual(
        [m.payload.operation, m.payload.table, m.payload.schema, m.payload.record, m.payload.old_record],
        [op, table, 'public', record, old],
        `${op} payload`
      )
    }
  })
}
