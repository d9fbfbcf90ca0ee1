// Postgres Changes helpers: the dev database behind the `pg` server
// instance (node-postgres), a fresh published table per test, and a
// realtime-js channel whose postgres_changes bindings are subscribed.

import pg from 'pg'
import { randomBytes } from 'node:crypto'
import { config } from './config.mjs'
import { makeClient, subscribe, Inbox, frameError, inbound } from './rt.mjs'

let pool = null

/** The shared pool on the `pg` instance's database (created on first use). */
export function db() {
  if (config.pg.unavailable) throw new Error(`no dev database for the pg suite: ${config.pg.unavailable}`)
  if (!pool) {
    pool = new pg.Pool({ connectionString: config.pg.dbUrl, max: 4 })
    // An idle client's error (e.g. the database restarting) must not crash the run.
    pool.on('error', () => {})
  }
  return pool
}

export async function sql(text, params) {
  return db().query(text, params)
}

/** `"ident"` quoting for identifiers built by tests. */
export const ident = (s) => `"${s.replace(/"/g, '""')}"`

/**
 * Creates `public.<prefix>_<random>` with `columnsSql`, adds it to the
 * publication the server streams, and drops it after the test (dropping a
 * table also removes it from the publication). opts.replicaFull sets
 * REPLICA IDENTITY FULL. Returns the table name.
 */
export async function makeTable(ctx, prefix, columnsSql, opts = {}) {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`
  const q = `public.${ident(name)}`
  await sql(`create table ${q} (${columnsSql})`)
  ctx.defer(() => sql(`drop table if exists ${q}`))
  if (opts.replicaFull) await sql(`alter table ${q} replica identity full`)
  await sql(`alter publication ${ident(config.pg.publication)} add table ${q}`)
  return name
}

/** A realtime-js client on the `pg` instance. */
export function pgClient(ctx, vsn, label) {
  if (config.pg.unavailable) throw new Error(`the pg server instance is not running: ${config.pg.unavailable}`)
  return makeClient(ctx, { vsn, instance: config.pg, label: label || `pg-${vsn}` })
}

/**
 * Opens channel `name` on `client` with one postgres_changes binding per
 * element of `bindings` (each gets its own Inbox, in order), subscribes, and
 * waits for the `system` message `Subscribed to PostgreSQL` that realtime-js
 * hands to `on('system')` listeners: only then are the bindings live. A
 * `postgres_changes` system error instead fails the test with its message.
 */
export async function subscribePg(ctx, client, name, bindings, { timeout = 10000 } = {}) {
  const channel = client.channel(name)
  const inboxes = bindings.map((b, i) => {
    const inbox = new Inbox(`binding ${i} ${JSON.stringify(b)}`)
    channel.on('postgres_changes', b, inbox.push)
    return inbox
  })
  const system = new Inbox(`system of ${name}`)
  channel.on('system', {}, system.push)
  await subscribe(ctx, channel, timeout)
  const sys = await system.wait((m) => m.extension === 'postgres_changes', {
    ctx,
    timeout,
    what: 'the postgres_changes system message',
  })
  if (sys.status !== 'ok' || sys.message !== 'Subscribed to PostgreSQL') {
    throw frameError(ctx, `postgres_changes subscription failed: ${JSON.stringify(sys)}`)
  }
  return { channel, inboxes, system }
}

/** `postgres_changes` messages a client received on a channel's topic, as {ids, data}. */
export function changeFrames(client, topic) {
  return inbound(client)
    .filter((m) => m.topic === topic && m.event === 'postgres_changes')
    .map((m) => m.payload)
}

/** `YYYY-MM-DDTHH:MM:SS.mmmZ`, the commit timestamp format. */
export const COMMIT_TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

/**
 * Runs `statements` in one transaction and returns the transaction's
 * start time in ms: the commit timestamp of its changes is at or after it.
 */
export async function tx(statements) {
  const c = await db().connect()
  try {
    await c.query('begin')
    const { rows } = await c.query(`select extract(epoch from now()) * 1000 as ms`)
    for (const s of statements) {
      if (typeof s === 'string') await c.query(s)
      else await c.query(s.text, s.values)
    }
    await c.query('commit')
    return Math.floor(Number(rows[0].ms))
  } catch (e) {
    await c.query('rollback').catch(() => {})
    throw e
  } finally {
    c.release()
  }
}

/**
 * Waits until the `pg` instance streams `realtime.messages` (its messages
 * slot is active): the stream starts at the tenant's first joined channel,
 * and rows committed before its slot existed are not broadcast.
 */
export async function messagesStreaming(ctx, { timeout = 10000 } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const { rows } = await sql('select active from pg_replication_slots where slot_name = $1', [config.pg.messagesSlot])
    if (rows[0]?.active) return
    if (Date.now() > deadline) throw frameError(ctx, `the messages slot ${config.pg.messagesSlot} is not streaming after ${timeout} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
