// The /status page: per-shard figures from /metrics (sampled every 2 s;
// rates are the difference of two samples) and, given an admin token, the
// tenants from /api/tenants. Tokens stay in the page; nothing is stored.
'use strict'

const SAMPLE_MS = 2000
const $ = (id) => document.getElementById(id)
const SERIES = ['realtime_connections', 'realtime_channels', 'realtime_tenants_active', 'realtime_messages_in_total', 'realtime_messages_out_total']
let previous = null // {at, shards: {shard: {series: value}}}

/** Per-shard values of the series above from Prometheus text. */
function parseMetrics(text) {
  const shards = {}
  for (const line of text.split('\n')) {
    const m = line.match(/^(\w+)\{([^}]*)\}\s+(\S+)/)
    if (!m || !SERIES.includes(m[1])) continue
    const shard = (m[2].match(/shard="(\d+)"/) || [])[1]
    if (shard === undefined) continue
    shards[shard] ??= {}
    shards[shard][m[1]] = (shards[shard][m[1]] ?? 0) + Number(m[3])
  }
  return shards
}

function cell(text) {
  const td = document.createElement('td')
  td.textContent = text
  return td
}

async function sample() {
  const token = $('metrics-token').value.trim()
  try {
    const res = await fetch('/metrics', { cache: 'no-store', headers: token ? { Authorization: `Bearer ${token}` } : {} })
    if (res.status !== 200) {
      $('sample-state').textContent = `/metrics answered ${res.status}${res.status === 403 ? ' (a metrics token is needed)' : ''}`
      $('sample-state').className = 'state err'
      return
    }
    const now = { at: Date.now(), shards: parseMetrics(await res.text()) }
    const rows = Object.keys(now.shards).sort((a, b) => a - b).map((shard) => {
      const s = now.shards[shard]
      const p = previous?.shards[shard]
      const secs = previous ? (now.at - previous.at) / 1000 : 0
      const rate = (name) => (p && secs > 0 ? ((s[name] - p[name]) / secs).toFixed(1) : '…')
      const tr = document.createElement('tr')
      tr.dataset.shard = shard
      tr.append(cell(shard), cell(s.realtime_connections ?? 0), cell(s.realtime_channels ?? 0), cell(s.realtime_tenants_active ?? 0), cell(rate('realtime_messages_in_total')), cell(rate('realtime_messages_out_total')))
      return tr
    })
    $('shards').tBodies[0].replaceChildren(...rows)
    previous = now
    $('sample-state').textContent = `sampled ${new Date(now.at).toISOString().slice(11, 19)}`
    $('sample-state').className = 'state on'
  } catch (e) {
    $('sample-state').textContent = `could not read /metrics: ${e}`
    $('sample-state').className = 'state err'
  }
}

async function loadTenants() {
  const token = $('admin-token').value.trim()
  const res = await fetch('/api/tenants', { cache: 'no-store', headers: { Authorization: `Bearer ${token}` } })
  const text = await res.text()
  let shown = text
  try {
    // Only names, placement and limits: a tenant's record may hold its
    // database credentials and JWT secret, which the page never shows.
    const body = JSON.parse(text)
    const list = Array.isArray(body) ? body : body.data ?? body
    shown = Array.isArray(list)
      ? JSON.stringify(list.map((t) => ({ external_id: t.external_id, name: t.name, max_concurrent_users: t.max_concurrent_users, max_events_per_second: t.max_events_per_second, suspend: t.suspend })), null, 2)
      : `${res.status}: ${JSON.stringify(body)}`
  } catch (_) {
    shown = `${res.status}: ${text.slice(0, 300)}`
  }
  $('tenants').textContent = shown
}

$('load-tenants').onclick = () => loadTenants()
sample()
setInterval(sample, SAMPLE_MS)
