// Filters checked against the database's own evaluation: one channel holds
// one binding per filter plus an unfiltered one; after the rows are written
// and the unfiltered binding has seen the last of them (changes arrive in
// commit order), each filtered binding must have received exactly the ids
// that `SELECT id ... WHERE <predicate>` returns for the same rows.

import { expectEqual, expectTrue } from '../../lib/match.mjs'
import { pgClient, subscribePg, makeTable, sql, ident } from '../../lib/pg.mjs'
import { uniq } from '../common.mjs'

const MARKER = 2147483647

/**
 * cases: [{filter, where}] (where: the SQL predicate the filter stands for);
 * columnsSql: the table (must have `id int primary key`); rowsSql: VALUES
 * rows to insert, in id order. opts.event: binding event (default INSERT);
 * opts.write(q): statements run after the inserts (for UPDATE/DELETE cases),
 * touching exactly the rows whose ids are in opts.touched.
 */
export async function checkFilters(ctx, vsn, { prefix, columnsSql, rowsSql, cases, event = 'INSERT', write, touched, replicaFull }) {
  const t = await makeTable(ctx, prefix, columnsSql, { replicaFull })
  const q = `public.${ident(t)}`
  const c = pgClient(ctx, vsn)
  const bindings = cases.map(({ filter }) => ({ event, schema: 'public', table: t, filter }))
  bindings.push({ event: '*', schema: 'public', table: t })
  const { inboxes, channel } = await subscribePg(ctx, c, uniq('flt'), bindings)
  const ids = channel.bindings.postgres_changes.map((b) => b.id)
  expectTrue(new Set(ids).size === ids.length, `distinct filters must get distinct ids: ${JSON.stringify(ids)}`)

  await sql(`insert into ${q} values ${rowsSql}`)
  // Expected ids are computed on the rows as the event saw them: the new
  // row of an INSERT/UPDATE, the old one of a DELETE.
  const expected = []
  const only = touched ? ` and id in (${touched.join(', ')})` : ''
  const select = async () => {
    for (const { where } of cases) expected.push((await sql(`select id from ${q} where (${where})${only} order by id`)).rows.map((r) => r.id))
  }
  if (event === 'DELETE') await select()
  if (write) for (const s of write(q)) await sql(s)
  if (event !== 'DELETE') await select()
  // Marker: the last change; once the unfiltered binding has it, every
  // earlier change has been delivered to every binding of the channel.
  await sql(`insert into ${q} (id) values (${MARKER})`)
  const all = inboxes[cases.length]
  await all.wait((x) => x.eventType === 'INSERT' && x.new.id === MARKER, { ctx, timeout: 8000, what: 'the marker row' })

  const seen = {}
  const want = {}
  cases.forEach(({ filter }, i) => {
    seen[filter] = inboxes[i].items
      .filter((x) => x.eventType === event)
      .map((x) => (event === 'DELETE' ? x.old.id : x.new.id))
      .filter((id) => id !== MARKER)
      .sort((a, b) => a - b)
    want[filter] = expected[i]
    const other = inboxes[i].items.filter((x) => x.eventType !== event)
    expectTrue(other.length === 0, `binding ${filter} (event ${event}) got ${other.map((x) => x.eventType).join(', ')}`)
  })
  expectEqual(seen, want, `ids each ${event} filter received vs the database's WHERE`)
}
