// Entry point: `node run.mjs <suite>` where suite is `realtime-js` or `phoenix`.
// Prints one line per test and closes with `N passed, N failed`; exits non-zero
// on any failure. TEST_FILTER=<regex> selects tests by name.

import { runAll } from './lib/harness.mjs'
import { config } from './lib/config.mjs'

const SUITES = {
  'realtime-js': [
    './suites/realtime-js/lifecycle.mjs',
    './suites/realtime-js/broadcast.mjs',
    './suites/realtime-js/presence.mjs',
    './suites/realtime-js/rest.mjs',
    './suites/realtime-js/errors.mjs',
    './suites/realtime-js/auth.mjs',
    './suites/realtime-js/limits.mjs',
    './suites/realtime-js/channel.mjs',
    './suites/realtime-js/websocket.mjs',
    './suites/realtime-js/rates.mjs',
  ],
  // Postgres Changes and Broadcast from Database on the `pg` instance (needs the
  // dev database; see servers.conf).
  'realtime-js-pg': [
    './suites/realtime-js-pg/changes.mjs',
    './suites/realtime-js-pg/filters.mjs',
    './suites/realtime-js-pg/filters-db.mjs',
    './suites/realtime-js-pg/subscribe-errors.mjs',
    './suites/realtime-js-pg/private.mjs',
    './suites/realtime-js-pg/replay.mjs',
    './suites/realtime-js-pg/db-broadcast.mjs',
  ],
  phoenix: ['./suites/phoenix/phoenix.mjs'],
  // The OpenAPI description against real answers (main, limits, eventrate,
  // joinrate, and tenants for the admin API).
  openapi: ['./suites/openapi/openapi.mjs'],
  // The inspector page in headless Chromium (the `main` instance).
  inspector: ['./suites/inspector/inspector.mjs'],
  // Three nodes on a nats-server (scripts/cluster up 3; RT_CLUSTER_PORTS).
  'realtime-js-cluster': ['./suites/realtime-js-cluster/broadcast.mjs', './suites/realtime-js-cluster/presence.mjs'],
}

const name = process.argv[2]
if (!SUITES[name]) {
  console.error(`usage: node run.mjs <${Object.keys(SUITES).join('|')}>`)
  process.exit(2)
}
if (name === 'realtime-js-cluster') {
  console.log(`# cluster nodes: ${process.env.RT_CLUSTER_PORTS || '(RT_CLUSTER_PORTS unset)'}`)
} else if (name.startsWith('realtime-js-pg')) {
  console.log(`# server: pg :${config.pg.port ?? '-'}, database ${config.pg.unavailable ? `unavailable (${config.pg.unavailable})` : config.pg.dbUrl.replace(/:[^:@/]*@/, ':***@')}`)
} else {
  console.log(`# servers: ${['main', 'limits', 'tenant', 'joinrate', 'eventrate'].map((n) => `${n} :${config[n].port}`).join(', ')}`)
}
for (const file of SUITES[name]) await import(file)
const ok = await runAll(name)
// Sockets of failed tests may keep the event loop alive; the verdict is final.
process.exit(ok ? 0 : 1)
