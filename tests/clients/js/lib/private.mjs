// Private channels on the `pg` instance: its database gets the `realtime`
// schema from the server itself (migrations run when the tenant first
// becomes active), and the policies below, which authorise by the JWT's
// `sub` and the shape of the topic:
//
//   rtjs:<sub>:ro:<anything>   the user <sub> may read (broadcast and presence)
//   rtjs:<sub>:rw:<anything>   ... and write (send and track)
//
// Anyone else, and any other topic, is refused. Policies are created once per
// database (idempotent, so parallel or repeated runs agree).

import { config } from './config.mjs'
import { sign, nowSecs } from './jwt.mjs'
import { makeClient } from './rt.mjs'
import { sql } from './pg.mjs'
import { uniq } from '../suites/common.mjs'

const POLICIES = `
do $p$
begin
  if not exists (select from pg_policies where schemaname = 'realtime' and policyname = 'rtjs_read') then
    create policy rtjs_read on realtime.messages for select to authenticated using (
      split_part(realtime.topic(), ':', 1) = 'rtjs'
      and split_part(realtime.topic(), ':', 2) = current_setting('request.jwt.claim.sub', true));
  end if;
  if not exists (select from pg_policies where schemaname = 'realtime' and policyname = 'rtjs_write') then
    create policy rtjs_write on realtime.messages for insert to authenticated with check (
      split_part(realtime.topic(), ':', 1) = 'rtjs'
      and split_part(realtime.topic(), ':', 2) = current_setting('request.jwt.claim.sub', true)
      and split_part(realtime.topic(), ':', 3) = 'rw');
  end if;
end
$p$`

let ready = null

/**
 * Resolves once the `pg` instance's database has the `realtime` schema (the
 * server installs it when the tenant becomes active: a first socket does
 * that) and the suite's policies. Bounded: fails after `timeout` ms.
 */
export function privateReady(ctx, timeout = 20000) {
  if (!ready) {
    ready = (async () => {
      const c = makeClient(ctx, { instance: config.pg, label: 'activate' })
      c.connect()
      // The migrations run in one transaction: the table's presence means
      // the whole schema (and today's partition after it) is there.
      const deadline = Date.now() + timeout
      for (;;) {
        const r = await sql(
          `select to_regclass('realtime.messages') is not null
              and to_regclass('realtime.' || to_char(now() at time zone 'utc', '"messages_"YYYY_MM_DD')) is not null as ok`
        )
        if (r.rows[0].ok) break
        if (Date.now() > deadline) throw new Error(`the server did not install the realtime schema within ${timeout} ms`)
        await new Promise((res) => setTimeout(res, 100))
      }
      await sql(`select pg_advisory_lock(7273002)`)
      try {
        await sql(POLICIES)
      } finally {
        await sql(`select pg_advisory_unlock(7273002)`)
      }
    })()
    ready.catch(() => {
      ready = null
    })
  }
  return ready
}

/** A fresh user id for the policies. */
export const newSub = () => uniq('u').replace(/-/g, '')

/** Topic `rtjs:<sub>:<mode>:<random>` (mode `ro` or `rw`). */
export const topicFor = (sub, mode) => `rtjs:${sub}:${mode}:${uniq('t')}`

/** An `authenticated` token for `sub`, signed for the `pg` instance. */
export const userToken = (sub, extra = {}) =>
  sign({ role: 'authenticated', sub, iat: nowSecs(), exp: nowSecs() + 3600, ...extra }, { secret: config.pg.secret })

/** A realtime-js client on the `pg` instance authenticated as `sub`. */
export async function userClient(ctx, vsn, sub, opts = {}) {
  const c = makeClient(ctx, { instance: config.pg, vsn, label: `${sub}-${vsn}`, token: userToken(sub), ...opts })
  await c.setAuth(userToken(sub))
  return c
}
