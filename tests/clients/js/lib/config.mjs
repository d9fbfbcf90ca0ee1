// Where the server instances are and which limits they were started with.
// Parsed from tests/clients/servers.conf (shared with the scripts and the
// Python suite); ports may be overridden by RT_<NAME>_PORT.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const confPath = process.env.RT_SERVERS_CONF || path.join(here, '..', '..', 'servers.conf')

export const DEFAULT_SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long'

function parse(text) {
  const out = {}
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const [name, port, ...kv] = line.split(/\s+/)
    const env = {}
    for (const item of kv) {
      const i = item.indexOf('=')
      env[item.slice(0, i)] = item.slice(i + 1)
    }
    const override = process.env[`RT_${name.toUpperCase()}_PORT`]
    out[name] = { name, port: Number(override || port), env }
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
  }
}

export const config = {
  jwtSecret: instances.main?.env.API_JWT_SECRET || DEFAULT_SECRET,
  main: describe(instances.main),
  limits: describe(instances.limits),
  tenant: describe(instances.tenant),
  joinrate: describe(instances.joinrate),
  eventrate: describe(instances.eventrate),
}
