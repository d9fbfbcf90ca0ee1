// Where the server instances are and which limits they were started with.
// Parsed from tests/clients/servers.conf (shared with the scripts and the
// Python suite); ports may be overridden by RT_<NAME>_PORT. `${NAME}` in a
// value is replaced by that environment variable, as scripts/lib/servers.sh
// does; names of unset ones are listed in the instance's `missing`.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const confPath = process.env.RT_SERVERS_CONF || path.join(here, '..', '..', 'servers.conf')

export const DEFAULT_SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long'

function expand(value, missing) {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name) => {
    if (process.env[name] === undefined) {
      missing.push(name)
      return ''
    }
    return process.env[name]
  })
}

function parse(text) {
  const out = {}
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const [name, port, ...kv] = line.split(/\s+/)
    const env = {}
    const missing = []
    for (const item of kv) {
      const i = item.indexOf('=')
      env[item.slice(0, i)] = expand(item.slice(i + 1), missing).replaceAll('%20', ' ')
    }
    const override = process.env[`RT_${name.toUpperCase()}_PORT`]
    out[name] = { name, port: Number(override || port), env, missing }
  }
  return out
}

const instances = parse(readFileSync(confPath, 'utf8'))

function num(inst, key, dflt) {
  return inst.env[key] !== undefined ? Number(inst.env[key]) : dflt
}

function describe(inst) {
  return {
    name: inst.name,
    port: inst.port,
    host: process.env.RT_HOST || '127.0.0.1',
    secret: inst.env.API_JWT_SECRET || DEFAULT_SECRET,
    tenant: inst.env.SELF_HOST_TENANT_NAME || 'realtime-dev',
    connectBackoffMs: num(inst, 'CONNECT_ERROR_BACKOFF_MS', 2000),
    channelBackoffMs: num(inst, 'CHANNEL_ERROR_BACKOFF_MS', 5000),
    maxChannels: num(inst, 'TENANT_MAX_CHANNELS_PER_CLIENT', 100),
    maxUsers: num(inst, 'TENANT_MAX_CONCURRENT_USERS', 200),
    payloadKb: num(inst, 'TENANT_MAX_PAYLOAD_SIZE_IN_KB', 3000),
    presenceMaxCalls: num(inst, 'CLIENT_PRESENCE_MAX_CALLS', 5),
    presenceWindowMs: num(inst, 'CLIENT_PRESENCE_WINDOW_MS', 30000),
    metricsSecret: inst.env.METRICS_JWT_SECRET,
    // Variables of its line that are unset (then it was not started).
    missing: inst.missing,
  }
}

/**
 * The `pg` instance plus where its database is (`dbUrl`), or
 * `{unavailable: why}` when its variables are unset (the scripts did not
 * start the dev database, so they did not start the instance either).
 */
function describePg(inst) {
  if (!inst) return { unavailable: 'servers.conf has no `pg` instance' }
  if (inst.missing.length > 0) {
    return { unavailable: `unset ${inst.missing.join(', ')}: start the dev database first (scripts/run-clients and scripts/test do)` }
  }
  const e = inst.env
  const enc = encodeURIComponent
  return {
    ...describe(inst),
    dbUrl: `postgres://${enc(e.DB_USER || 'postgres')}:${enc(e.DB_PASSWORD || '')}@${e.DB_HOST}:${e.DB_PORT}/${e.DB_NAME || 'postgres'}`,
    publication: e.DB_PUBLICATION || 'supabase_realtime',
    // The slot of its messages stream (Broadcast from Database).
    messagesSlot: `realtime_messages_slot${e.SLOT_NAME_SUFFIX || ''}`,
  }
}

export const config = {
  jwtSecret: instances.main?.env.API_JWT_SECRET || DEFAULT_SECRET,
  main: describe(instances.main),
  limits: describe(instances.limits),
  tenant: describe(instances.tenant),
  joinrate: describe(instances.joinrate),
  eventrate: describe(instances.eventrate),
  pg: describePg(instances.pg),
  tenants: instances.tenants && describe(instances.tenants),
}
