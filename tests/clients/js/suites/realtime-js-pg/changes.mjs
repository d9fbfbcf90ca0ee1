// realtime-js postgres_changes against a server streaming the dev database:
// INSERT/UPDATE/DELETE/`*` as the client hands them to callbacks (eventType,
// new/old converted by realtime-js, schema, table, commit_timestamp, errors),
// replica identity, typed values, `select`, ids routing between bindings and
// channels. Each test owns a fresh table in the `supabase_realtime`
// publication. Negative checks need no sleeps: changes arrive in commit
// order, so a later marker change that does arrive proves an earlier one
// was not sent.

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectEqual, expectTrue, pred } from '../../lib/match.mjs'
import { pgClient, subscribePg, makeTable, sql, ident, tx, changeFrames, COMMIT_TS } from '../../lib/pg.mjs'
import { uniq } from '../common.mjs'

const VSNS = ['2.0.0', '1.0.0']
const WAIT = { timeout: 8000 }

/** A commit_timestamp in the format, not before the transaction started nor in the future. */
function commitTs(startedMs) {
  return pred(`commit_timestamp YYYY-MM-DDTHH:MM:SS.mmmZ in [${new Date(startedMs).toISOString()}, now]`, (v) => {
    if (!COMMIT_TS.test(v)) return false
    const t = Date.parse(v)
    return t >= startedMs && t <= Date.now() + 1000
  })
}

/** What realtime-js hands a postgres_changes callback. */
function change(table, eventType, { newRow = {}, oldRow = {}, ts }) {
  return { schema: 'public', table, commit_timestamp: ts, eventType, new: newRow, old: oldRow, errors: null }
}

const q = (t) => `public.${ident(t)}`

for (const vsn of VSNS) {
  test(`[${vsn}] INSERT binding: callback gets eventType INSERT, new row, old {}, commit_timestamp, errors null`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_ins', 'id int primary key, title text, done bool default false')
    const c = pgClient(ctx, vsn)
    const { inboxes, channel } = await subscribePg(ctx, c, uniq('ins'), [{ event: 'INSERT', schema: 'public', table: t }])
    const [inbox] = inboxes
    const started = await tx([`insert into ${q(t)} (id, title) values (1, 'milk')`])
    const got = await inbox.wait(() => true, { ctx, what: 'the INSERT', ...WAIT })
    expectMatch(got, change(t, 'INSERT', { newRow: { id: 1, title: 'milk', done: false }, ts: commitTs(started) }), 'INSERT payload')
    // UPDATE and DELETE are not INSERTs; the later INSERT (id 2) proves they were not sent.
    await sql(`update ${q(t)} set done = true where id = 1`)
    await sql(`delete from ${q(t)} where id = 1`)
    await sql(`insert into ${q(t)} (id, title) values (2, 'eggs')`)
    await inbox.wait((x) => x.new.id === 2, { ctx, what: 'the second INSERT', ...WAIT })
    expectEqual(
      inbox.items.map((x) => [x.eventType, x.new.id]),
      [
        ['INSERT', 1],
        ['INSERT', 2],
      ],
      'INSERT binding callbacks'
    )
    // The wire: one message per change, carrying the binding's id.
    const id = channel.bindings.postgres_changes[0].id
    const frames = changeFrames(c, channel.topic)
    expectEqual(
      frames.map((f) => [f.ids, f.data.type]),
      [
        [[id], 'INSERT'],
        [[id], 'INSERT'],
      ],
      'postgres_changes frames (ids, type)'
    )
    expectMatch(
      frames[0].data.columns,
      [
        { name: 'id', type: 'int4' },
        { name: 'title', type: 'text' },
        { name: 'done', type: 'bool' },
      ],
      'columns'
    )
  })

  test(`[${vsn}] UPDATE binding, REPLICA IDENTITY DEFAULT: new is the row, old only the primary key`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_upd', 'id int primary key, title text, n int')
    await sql(`insert into ${q(t)} values (1, 'a', 10), (2, 'b', 20)`)
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('upd'), [{ event: 'UPDATE', schema: 'public', table: t }])
    const started = await tx([`update ${q(t)} set title = 'A', n = n + 1 where id = 1`])
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the UPDATE', ...WAIT })
    expectMatch(got, change(t, 'UPDATE', { newRow: { id: 1, title: 'A', n: 11 }, oldRow: { id: 1 }, ts: commitTs(started) }), 'UPDATE payload')
    // INSERT and DELETE do not reach an UPDATE binding.
    await sql(`insert into ${q(t)} values (3, 'c', 30)`)
    await sql(`delete from ${q(t)} where id = 2`)
    await sql(`update ${q(t)} set n = 0 where id = 3`)
    await inboxes[0].wait((x) => x.new.id === 3, { ctx, what: 'the second UPDATE', ...WAIT })
    expectEqual(
      inboxes[0].items.map((x) => [x.eventType, x.new.id, x.old]),
      [
        ['UPDATE', 1, { id: 1 }],
        ['UPDATE', 3, { id: 3 }],
      ],
      'UPDATE binding callbacks'
    )
  })

  test(`[${vsn}] UPDATE with REPLICA IDENTITY FULL: old is the whole previous row`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_updf', 'id int primary key, title text, tags text[], meta jsonb', { replicaFull: true })
    await sql(`insert into ${q(t)} values (1, 'a', '{x,y}', '{"k": 1}')`)
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('updf'), [{ event: 'UPDATE', schema: 'public', table: t }])
    const started = await tx([`update ${q(t)} set title = null, tags = '{z}', meta = '{"k": [2]}' where id = 1`])
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the UPDATE', ...WAIT })
    expectMatch(
      got,
      change(t, 'UPDATE', {
        newRow: { id: 1, title: null, tags: ['z'], meta: { k: [2] } },
        oldRow: { id: 1, title: 'a', tags: ['x', 'y'], meta: { k: 1 } },
        ts: commitTs(started),
      }),
      'UPDATE payload (FULL)'
    )
  })

  test(`[${vsn}] UPDATE that changes the primary key: old carries the old key`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_updpk', 'id int primary key, title text')
    await sql(`insert into ${q(t)} values (1, 'a')`)
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('updpk'), [{ event: 'UPDATE', schema: 'public', table: t }])
    await sql(`update ${q(t)} set id = 7 where id = 1`)
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the UPDATE', ...WAIT })
    expectEqual([got.new, got.old], [{ id: 7, title: 'a' }, { id: 1 }], '[new, old]')
  })

  test(`[${vsn}] DELETE binding, REPLICA IDENTITY DEFAULT: old is the primary key, new {}`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_del', 'id int primary key, title text')
    await sql(`insert into ${q(t)} values (1, 'a'), (2, 'b')`)
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('del'), [{ event: 'DELETE', schema: 'public', table: t }])
    await sql(`insert into ${q(t)} values (3, 'c')`)
    await sql(`update ${q(t)} set title = 'x' where id = 2`)
    const started = await tx([`delete from ${q(t)} where id = 1`])
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the DELETE', ...WAIT })
    expectMatch(got, change(t, 'DELETE', { oldRow: { id: 1 }, ts: commitTs(started) }), 'DELETE payload')
    await sql(`delete from ${q(t)} where id = 2`)
    await inboxes[0].wait((x) => x.old.id === 2, { ctx, what: 'the second DELETE', ...WAIT })
    expectEqual(
      inboxes[0].items.map((x) => [x.eventType, x.old]),
      [
        ['DELETE', { id: 1 }],
        ['DELETE', { id: 2 }],
      ],
      'DELETE binding callbacks (no INSERT or UPDATE)'
    )
  })

  test(`[${vsn}] DELETE with REPLICA IDENTITY FULL: old is the whole deleted row`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_delf', 'id int primary key, title text, n numeric, ok bool', { replicaFull: true })
    await sql(`insert into ${q(t)} values (1, 'a', 1.50, true)`)
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('delf'), [{ event: 'DELETE', schema: 'public', table: t }])
    const started = await tx([`delete from ${q(t)} where id = 1`])
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the DELETE', ...WAIT })
    expectMatch(got, change(t, 'DELETE', { oldRow: { id: 1, title: 'a', n: 1.5, ok: true }, ts: commitTs(started) }), 'DELETE payload (FULL)')
  })

  test(`[${vsn}] event '*': INSERT, UPDATE, DELETE arrive in commit order, one transaction's rows in statement order`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_all', 'id int primary key, v text')
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('all'), [{ event: '*', schema: 'public', table: t }])
    await sql(`insert into ${q(t)} values (1, 'a')`)
    await sql(`update ${q(t)} set v = 'b' where id = 1`)
    await tx([`insert into ${q(t)} values (2, 'c')`, `insert into ${q(t)} values (3, 'd')`, `delete from ${q(t)} where id = 1`])
    await sql(`update ${q(t)} set v = 'e' where id = 3`)
    await inboxes[0].wait((x) => x.eventType === 'UPDATE' && x.new.id === 3, { ctx, what: 'the last UPDATE', ...WAIT })
    expectEqual(
      inboxes[0].items.map((x) => [x.eventType, x.new, x.old]),
      [
        ['INSERT', { id: 1, v: 'a' }, {}],
        ['UPDATE', { id: 1, v: 'b' }, { id: 1 }],
        ['INSERT', { id: 2, v: 'c' }, {}],
        ['INSERT', { id: 3, v: 'd' }, {}],
        ['DELETE', {}, { id: 1 }],
        ['UPDATE', { id: 3, v: 'e' }, { id: 3 }],
      ],
      "'*' callbacks [eventType, new, old]"
    )
    const ts = inboxes[0].items.map((x) => x.commit_timestamp)
    expectTrue(ts[2] === ts[3] && ts[3] === ts[4], `one transaction, one commit_timestamp: ${JSON.stringify(ts)}`)
    expectTrue([...ts].sort().join() === ts.join(), `commit timestamps not ascending: ${JSON.stringify(ts)}`)
  })

  test(`[${vsn}] typed values as realtime-js converts them, equal to the database's to_jsonb of the row`, async (ctx) => {
    const t = await makeTable(
      ctx,
      'pgjs_types',
      `id int8 primary key, i2 int2, i4 int4, n numeric, f4 float4, f8 float8, b bool, t text, vc varchar(10),
       j json, jb jsonb, ai int4[], at text[], ts timestamp, tstz timestamptz, d date, u uuid, by bytea, nul text, nularr int4[]`
    )
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('types'), [{ event: 'INSERT', schema: 'public', table: t }])
    await sql(
      `insert into ${q(t)} values (9007199254740991, -32768, 2147483647, 12.50, 1.5, -0.25, true, 'héllo "q" \\ ✓', 'short',
        '{"a": [1, null, "x"], "b": {"c": false}}', '{"z": 1, "a": [true]}', '{1,2,NULL}', '{"a b","c,d",NULL}',
        '2024-01-02 03:04:05.678', '2024-01-02 03:04:05.678+02', '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '\\x00ff10', null, null)`
    )
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the INSERT', ...WAIT })
    const expected = {
      id: 9007199254740991,
      i2: -32768,
      i4: 2147483647,
      n: 12.5,
      f4: 1.5,
      f8: -0.25,
      b: true,
      t: 'héllo "q" \\ ✓',
      vc: 'short',
      j: { a: [1, null, 'x'], b: { c: false } },
      jb: { z: 1, a: [true] },
      ai: [1, 2, null],
      at: ['a b', 'c,d', null],
      ts: '2024-01-02T03:04:05.678',
      tstz: '2024-01-02T01:04:05.678+00:00',
      d: '2024-02-29',
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      by: '\\x00ff10',
      nul: null,
      nularr: null,
    }
    expectEqual(got.new, expected, 'new (literal expectation)')
    const { rows } = await sql(`select to_jsonb(x) as row from ${q(t)} x`)
    expectEqual(got.new, rows[0].row, 'new vs the database to_jsonb(row)')
    expectEqual(got.old, {}, 'old of an INSERT')
  })

  test(`[${vsn}] select: columns, new and old limited to the selected columns plus the primary key`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_sel', 'id int primary key, title text, secret text, n int', { replicaFull: true })
    const c = pgClient(ctx, vsn)
    const { inboxes, channel } = await subscribePg(ctx, c, uniq('sel'), [{ event: '*', schema: 'public', table: t, select: ['title'] }])
    await sql(`insert into ${q(t)} values (1, 'a', 's1', 1)`)
    await sql(`update ${q(t)} set title = 'b', secret = 's2' where id = 1`)
    await sql(`delete from ${q(t)} where id = 1`)
    await inboxes[0].wait((x) => x.eventType === 'DELETE', { ctx, what: 'the DELETE', ...WAIT })
    expectEqual(
      inboxes[0].items.map((x) => [x.eventType, x.new, x.old]),
      [
        ['INSERT', { id: 1, title: 'a' }, {}],
        ['UPDATE', { id: 1, title: 'b' }, { id: 1, title: 'a' }],
        ['DELETE', {}, { id: 1, title: 'b' }],
      ],
      '[eventType, new, old] with select'
    )
    for (const frame of changeFrames(c, channel.topic)) {
      expectEqual(
        frame.data.columns,
        [
          { name: 'id', type: 'int4' },
          { name: 'title', type: 'text' },
        ],
        `columns of the ${frame.data.type} with select`
      )
    }
  })

  test(`[${vsn}] a table without a primary key: INSERT arrives as an error row (Error 400)`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_nopk', 'a int, b text')
    const c = pgClient(ctx, vsn)
    const { inboxes, channel } = await subscribePg(ctx, c, uniq('nopk'), [{ event: '*', schema: 'public', table: t }])
    await sql(`insert into ${q(t)} values (1, 'x')`)
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the error row', ...WAIT })
    expectEqual(got, { ...change(t, 'INSERT', { ts: null }), errors: ['Error 400: Bad Request, no primary key'] }, 'callback payload')
    expectEqual(changeFrames(c, channel.topic)[0].data.columns, [], 'columns of an error row')
  })

  test(`[${vsn}] several bindings on one channel: each callback gets exactly the changes its binding matches (ids routing)`, async (ctx) => {
    const t1 = await makeTable(ctx, 'pgjs_multi_a', 'id int primary key, v text')
    const t2 = await makeTable(ctx, 'pgjs_multi_b', 'id int primary key, v text')
    const c = pgClient(ctx, vsn)
    const bindings = [
      { event: 'INSERT', schema: 'public', table: t1 },
      { event: 'UPDATE', schema: 'public', table: t1 },
      { event: '*', schema: 'public', table: t2 },
      { event: '*', schema: 'public', table: t1, filter: 'id=eq.2' },
      { event: 'INSERT', schema: 'public', table: t1 }, // identical to the first: same id
    ]
    const { inboxes, channel } = await subscribePg(ctx, c, uniq('multi'), bindings)
    const ids = channel.bindings.postgres_changes.map((b) => b.id)
    expectTrue(ids[0] === ids[4], `identical bindings got ids ${ids[0]} and ${ids[4]}`)
    expectTrue(new Set(ids.slice(0, 4)).size === 4, `distinct bindings got equal ids: ${JSON.stringify(ids)}`)

    await sql(`insert into ${q(t1)} values (1, 'a'), (2, 'b')`)
    await sql(`update ${q(t1)} set v = 'bb' where id = 2`)
    await sql(`insert into ${q(t2)} values (1, 'z')`)
    await sql(`delete from ${q(t1)} where id = 2`)
    await sql(`delete from ${q(t2)} where id = 1`)
    await inboxes[2].wait((x) => x.eventType === 'DELETE', { ctx, what: 'the DELETE on the second table', ...WAIT })

    const seen = (i) => inboxes[i].items.map((x) => `${x.table === t1 ? 't1' : 't2'} ${x.eventType} ${x.new.id ?? x.old.id}`)
    expectEqual(seen(0), ['t1 INSERT 1', 't1 INSERT 2'], 'INSERT t1 binding')
    expectEqual(seen(1), ['t1 UPDATE 2'], 'UPDATE t1 binding')
    expectEqual(seen(2), ['t2 INSERT 1', 't2 DELETE 1'], '* t2 binding')
    expectEqual(seen(3), ['t1 INSERT 2', 't1 UPDATE 2', 't1 DELETE 2'], '* t1 id=eq.2 binding')
    expectEqual(seen(4), ['t1 INSERT 1', 't1 INSERT 2'], 'duplicate INSERT t1 binding')

    // One message per change; ids has one entry per matching binding of
    // this channel, so an id shared by identical bindings appears once per
    // binding (as the Elixir server lists one per subscription row). Its
    // order is not something realtime-js looks at: compared sorted.
    const frames = changeFrames(c, channel.topic).map((f) => [f.data.table === t1 ? 't1' : 't2', f.data.type, [...f.ids].sort()])
    const s = (...xs) => [...xs].sort()
    expectEqual(
      frames,
      [
        ['t1', 'INSERT', s(ids[0], ids[4])],
        ['t1', 'INSERT', s(ids[0], ids[3], ids[4])],
        ['t1', 'UPDATE', s(ids[1], ids[3])],
        ['t2', 'INSERT', s(ids[2])],
        ['t1', 'DELETE', s(ids[3])],
        ['t2', 'DELETE', s(ids[2])],
      ],
      'frames [table, type, sorted ids]'
    )
  })

  test(`[${vsn}] two channels (same client and another client) each get the change once, with their own ids`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_two', 'id int primary key, v text')
    const c1 = pgClient(ctx, vsn, 'client-1')
    const c2 = pgClient(ctx, vsn, 'client-2')
    const a = await subscribePg(ctx, c1, uniq('two-a'), [{ event: '*', schema: 'public', table: t }])
    const b = await subscribePg(ctx, c1, uniq('two-b'), [
      { event: 'DELETE', schema: 'public', table: t },
      { event: 'INSERT', schema: 'public', table: t },
    ])
    const d = await subscribePg(ctx, c2, uniq('two-c'), [
      { event: 'INSERT', schema: 'public', table: t, filter: 'id=eq.1' },
      { event: '*', schema: 'public', table: t },
    ])
    await sql(`insert into ${q(t)} values (1, 'x')`)
    await sql(`insert into ${q(t)} values (2, 'y')`)
    await sql(`delete from ${q(t)} where id = 1`)
    await a.inboxes[0].wait((x) => x.eventType === 'DELETE', { ctx, what: 'the DELETE on channel a', ...WAIT })
    await b.inboxes[0].wait(() => true, { ctx, what: 'the DELETE on channel b', ...WAIT })
    await d.inboxes[1].wait((x) => x.eventType === 'DELETE', { ctx, what: 'the DELETE on client 2', ...WAIT })
    const seen = (inbox) => inbox.items.map((x) => `${x.eventType} ${x.new.id ?? x.old.id}`)
    expectEqual(seen(a.inboxes[0]), ['INSERT 1', 'INSERT 2', 'DELETE 1'], 'channel a (*)')
    expectEqual(seen(b.inboxes[0]), ['DELETE 1'], 'channel b DELETE binding')
    expectEqual(seen(b.inboxes[1]), ['INSERT 1', 'INSERT 2'], 'channel b INSERT binding')
    expectEqual(seen(d.inboxes[0]), ['INSERT 1'], 'client 2 INSERT id=eq.1 binding')
    expectEqual(seen(d.inboxes[1]), ['INSERT 1', 'INSERT 2', 'DELETE 1'], 'client 2 * binding')
    const idsOn = (client, ch) => changeFrames(client, ch.topic).map((f) => [...f.ids].sort())
    const idA = a.channel.bindings.postgres_changes[0].id
    const [idBdel, idBins] = b.channel.bindings.postgres_changes.map((x) => x.id)
    const [idDeq, idDall] = d.channel.bindings.postgres_changes.map((x) => x.id)
    expectEqual(idsOn(c1, a.channel), [[idA], [idA], [idA]], 'channel a frame ids')
    expectEqual(idsOn(c1, b.channel), [[idBins], [idBins], [idBdel]], 'channel b frame ids')
    expectEqual(idsOn(c2, d.channel), [[idDeq, idDall].sort(), [idDall], [idDall]], 'client 2 frame ids')
  })

  test(`[${vsn}] schema-wide binding (table '*') sees changes of any published table in the schema`, async (ctx) => {
    const t1 = await makeTable(ctx, 'pgjs_wild_a', 'id int primary key')
    const t2 = await makeTable(ctx, 'pgjs_wild_b', 'id int primary key')
    const c = pgClient(ctx, vsn)
    const { inboxes } = await subscribePg(ctx, c, uniq('wild'), [{ event: 'INSERT', schema: 'public' }])
    await sql(`insert into ${q(t1)} values (1)`)
    await sql(`insert into ${q(t2)} values (2)`)
    await inboxes[0].wait((x) => x.table === t2, { ctx, what: `INSERT on ${t2}`, ...WAIT })
    const mine = inboxes[0].items.filter((x) => x.table === t1 || x.table === t2)
    expectEqual(
      mine.map((x) => [x.schema, x.table, x.eventType, x.new]),
      [
        ['public', t1, 'INSERT', { id: 1 }],
        ['public', t2, 'INSERT', { id: 2 }],
      ],
      'schema-wide INSERTs'
    )
  })
}

for (const vsn of VSNS) {
  test(`[${vsn}] lower-case event 'insert' is echoed as sent and still gets INSERTs`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_lc', 'id int primary key')
    const c = pgClient(ctx, vsn)
    const { inboxes, channel } = await subscribePg(ctx, c, uniq('lc'), [{ event: 'insert', schema: 'public', table: t }])
    await sql(`insert into ${q(t)} values (1)`)
    await sql(`delete from ${q(t)} where id = 1`)
    await sql(`insert into ${q(t)} values (2)`)
    await inboxes[0].wait((x) => x.new.id === 2, { ctx, what: 'the second INSERT', ...WAIT })
    expectEqual(
      inboxes[0].items.map((x) => [x.eventType, x.new.id]),
      [
        ['INSERT', 1],
        ['INSERT', 2],
      ],
      "callbacks of event 'insert'"
    )
    expectEqual(channel.bindings.postgres_changes[0].filter.event, 'insert', 'binding as the client keeps it')
  })

  test(`[${vsn}] after unsubscribe a channel gets no more changes; another channel on the socket still does`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_leave', 'id int primary key')
    const c = pgClient(ctx, vsn)
    const gone = await subscribePg(ctx, c, uniq('leave-a'), [{ event: '*', schema: 'public', table: t }])
    const stay = await subscribePg(ctx, c, uniq('leave-b'), [{ event: '*', schema: 'public', table: t }])
    await sql(`insert into ${q(t)} values (1)`)
    await gone.inboxes[0].wait(() => true, { ctx, what: 'the INSERT before leaving', ...WAIT })
    const res = await gone.channel.unsubscribe()
    expectEqual(res, 'ok', 'unsubscribe()')
    await sql(`insert into ${q(t)} values (2)`)
    await stay.inboxes[0].wait((x) => x.new.id === 2, { ctx, what: 'the INSERT after the other channel left', ...WAIT })
    expectEqual(gone.inboxes[0].items.map((x) => x.new.id), [1], 'callbacks of the channel that left')
    expectEqual(changeFrames(c, gone.channel.topic).length, 1, 'postgres_changes frames on the left topic')
  })

  test(`[${vsn}] TRUNCATE is not delivered`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_trunc', 'id int primary key')
    const c = pgClient(ctx, vsn)
    const { inboxes, channel } = await subscribePg(ctx, c, uniq('trunc'), [{ event: '*', schema: 'public', table: t }])
    await sql(`insert into ${q(t)} values (1)`)
    await sql(`truncate ${q(t)}`)
    await sql(`insert into ${q(t)} values (2)`)
    await inboxes[0].wait((x) => x.new.id === 2, { ctx, what: 'the INSERT after TRUNCATE', ...WAIT })
    expectEqual(
      inboxes[0].items.map((x) => [x.eventType, x.new.id]),
      [
        ['INSERT', 1],
        ['INSERT', 2],
      ],
      'callbacks around a TRUNCATE'
    )
    expectEqual(changeFrames(c, channel.topic).length, 2, 'postgres_changes frames')
  })

  for (const full of [false, true]) {
    test(`[${vsn}] unchanged TOASTed column on UPDATE: ${full ? 'present in new and old (REPLICA IDENTITY FULL)' : 'left out of new (DEFAULT)'}`, async (ctx) => {
      const t = await makeTable(ctx, full ? 'pgjs_toastf' : 'pgjs_toast', 'id int primary key, n int, big text', { replicaFull: full })
      await sql(`alter table ${q(t)} alter column big set storage external`)
      const c = pgClient(ctx, vsn)
      const { inboxes } = await subscribePg(ctx, c, uniq('toast'), [{ event: 'UPDATE', schema: 'public', table: t }])
      // 8 KB, stored out of line uncompressed (EXTERNAL): a TOAST pointer in the row.
      await sql(`insert into ${q(t)} values (1, 1, repeat('x', 8192))`)
      await sql(`update ${q(t)} set n = 2 where id = 1`)
      const got = await inboxes[0].wait(() => true, { ctx, what: 'the UPDATE', ...WAIT })
      const big = 'x'.repeat(8192)
      if (full) {
        expectEqual([got.new, got.old], [{ id: 1, n: 2, big }, { id: 1, n: 1, big }], '[new, old]')
      } else {
        expectEqual([got.new, got.old], [{ id: 1, n: 2 }, { id: 1 }], '[new, old] (unchanged TOAST value omitted)')
      }
    })
  }
}

for (const vsn of VSNS) {
  test(`[${vsn}] realtime-js conversions of string-rendered values: Infinity parsed, NaN kept, a jsonb string parsed again`, async (ctx) => {
    const t = await makeTable(ctx, 'pgjs_conv', 'id int primary key, pinf float8, ninf float4, fnan float8, nnan numeric, jstr jsonb, jtxt jsonb, ts timestamp, iv interval, e int8')
    const c = pgClient(ctx, vsn)
    const { inboxes, channel } = await subscribePg(ctx, c, uniq('conv'), [{ event: 'INSERT', schema: 'public', table: t }])
    await sql(
      `insert into ${q(t)} values (1, 'Infinity', '-Infinity', 'NaN', 'NaN', '"42"', '"hi"', 'infinity', '1 day 02:03:04', 9007199254740993)`
    )
    const got = await inboxes[0].wait(() => true, { ctx, what: 'the INSERT', ...WAIT })
    // On the wire the values are to_jsonb's: strings for the special
    // floats, the jsonb string as a JSON string.
    const record = changeFrames(c, channel.topic)[0].data.record
    const { rows } = await sql(`select to_jsonb(x) as row from ${q(t)} x`)
    expectEqual(record, rows[0].row, 'record vs the database to_jsonb(row)')
    expectEqual(
      got.new,
      {
        id: 1,
        pinf: Infinity, // float8: parseFloat('Infinity')
        ninf: -Infinity,
        fnan: 'NaN', // parseFloat gives NaN, which realtime-js rejects: the string stays
        nnan: 'NaN',
        jstr: 42, // jsonb: a string value is JSON.parse'd once more
        jtxt: 'hi',
        ts: 'infinity',
        iv: '1 day 02:03:04',
        e: 9007199254740992, // beyond 2^53: JSON numbers lose precision in any JS client
      },
      'new as realtime-js converts it'
    )
  })
}
