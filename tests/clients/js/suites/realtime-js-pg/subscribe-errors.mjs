// Subscriptions the database would refuse (PROTOCOL 6.2): a table that is
// not in the publication, a filter on a missing column, a filter value the
// column type cannot read, an `is` keyword that does not exist. The join
// itself succeeds; instead of `Subscribed to PostgreSQL` the channel gets a
// `postgres_changes` system error with the Elixir server's text, and the
// channel stays joined.

import { test } from '../../lib/harness.mjs'
import { expectMatch, expectTrue, pred } from '../../lib/match.mjs'
import { Inbox, subscribe } from '../../lib/rt.mjs'
import { pgClient, makeTable, sql, ident } from '../../lib/pg.mjs'
import { uniq } from '../common.mjs'

const VSNS = ['2.0.0', '1.0.0']
const EXCEPTION_PREFIX = 'Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: ['

/** Joins with one binding and returns the first postgres_changes system message. */
async function firstSystem(ctx, vsn, binding) {
  const c = pgClient(ctx, vsn)
  const name = uniq('suberr')
  const ch = c.channel(name)
  ch.on('postgres_changes', binding, () => {})
  const system = new Inbox('system')
  ch.on('system', {}, system.push)
  await subscribe(ctx, ch)
  const msg = await system.wait((m) => m.extension === 'postgres_changes', { ctx, timeout: 10000, what: 'the postgres_changes system message' })
  expectTrue(ch.state === 'joined', `channel state ${ch.state} after the subscription error`)
  return { msg, name }
}

const endsWith = (suffix) => pred(`"${EXCEPTION_PREFIX}...${suffix}"`, (s) => typeof s === 'string' && s.startsWith(EXCEPTION_PREFIX) && s.endsWith(suffix))

for (const vsn of VSNS) {
  test(`[${vsn}] a table that is not in the publication: system error "Please check Realtime is enabled"`, async (ctx) => {
    const t = `pgjs_unpub_${uniq('t').slice(2)}`.replace(/-/g, '_')
    await sql(`create table public.${ident(t)} (id int primary key)`)
    ctx.defer(() => sql(`drop table if exists public.${ident(t)}`))
    const { msg, name } = await firstSystem(ctx, vsn, { event: '*', schema: 'public', table: t })
    expectMatch(
      msg,
      {
        extension: 'postgres_changes',
        status: 'error',
        message: `Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: ${t}, filters: [], select: nil]`,
        channel: name,
      },
      'system message'
    )
  })

  const bad = [
    ['a filter on a missing column', 'nope=eq.1', 'ERROR P0001 (raise_exception) invalid column for filter nope'],
    ['a filter value the column type cannot read', 'id=eq.abc', 'ERROR 22P02 (invalid_text_representation) invalid input syntax for type integer: "abc"'],
    ['an unknown `is` keyword', 's=is.maybe', 'ERROR P0001 (raise_exception) invalid value for is filter: must be null, true, false, or unknown'],
  ]
  for (const [what, filter, exception] of bad) {
    test(`[${vsn}] ${what} (${filter}): system error with the database's exception`, async (ctx) => {
      const t = await makeTable(ctx, 'pgjs_suberr', 'id int primary key, s text')
      const { msg, name } = await firstSystem(ctx, vsn, { event: '*', schema: 'public', table: t, filter })
      expectMatch(msg, { extension: 'postgres_changes', status: 'error', message: endsWith(`Exception: ${exception}`), channel: name }, 'system message')
    })
  }
}
