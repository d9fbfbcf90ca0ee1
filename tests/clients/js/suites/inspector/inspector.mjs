// The inspector page (/inspector) in headless Chromium, driven over the
// DevTools protocol (lib/cdp.mjs): it joins a channel with a presence key
// on the development token it is offered, shows a broadcast sent over REST
// in its live log, sends one a realtime-js client receives, shows a
// realtime-js client's presence join and leave, and tracks and untracks
// itself. The status page shows the shards' figures. Screenshots are saved
// as inspector.png and status.png in TEST_LOG_DIR (target/test-logs) for a
// person to look at.

import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from '../../lib/harness.mjs'
import { config } from '../../lib/config.mjs'
import { expectTrue, expectEqual } from '../../lib/match.mjs'
import { token } from '../../lib/jwt.mjs'
import { makeClient, subscribe, Inbox } from '../../lib/rt.mjs'
import { Browser } from '../../lib/cdp.mjs'
import { uniq } from '../common.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const REPO = path.join(here, '..', '..', '..', '..', '..')
const LOG_DIR = path.resolve(REPO, process.env.TEST_LOG_DIR || path.join('target', 'test-logs'))

const inst = config.main
const base = `http://${inst.host}:${inst.port}`
const js = (v) => JSON.stringify(v)

/** Sets an input's value (or a checkbox's state) in the page. */
const fill = (b, id, value) =>
  b.eval(`(() => { const el = document.getElementById(${js(id)}); if (el.type === 'checkbox') el.checked = ${js(value)}; else el.value = ${js(value)}; return true })()`)
const click = (b, id) => b.eval(`(document.getElementById(${js(id)}).click(), true)`)
/** Whether a log entry of this event contains `text`. */
const logWith = (event, text) =>
  `[...document.querySelectorAll('#log li')].some((li) => li.dataset.event === ${js(event)} && li.textContent.includes(${js(text)}))`
const presenceKeys = `[...document.querySelectorAll('#presence-list li[data-key]')].map((li) => li.dataset.key)`

async function openPage(ctx) {
  const b = await Browser.launch({ height: 1000 })
  ctx.defer(() => b.close())
  ctx.frameSources.push({ label: 'page console', dump: () => b.consoleLines.slice(-20).map((l) => `      ${l}`).join('\n') })
  ctx.defer(async () => {
    // Whatever happened, leave a picture of the page for a person.
    try {
      mkdirSync(LOG_DIR, { recursive: true })
      const last = path.join(LOG_DIR, 'inspector-last.png')
      writeFileSync(last, await b.screenshot())
      ctx.note(`the page at the end: ${last}`)
    } catch {}
  })
  await b.navigate(`${base}/inspector`)
  await b.waitFor('window.inspector && window.inspector.ready.then(() => true)', { what: 'the inspector script' })
  return b
}

test('inspector: joins a channel, shows a REST broadcast, sends one to realtime-js, shows presence join and leave', async (ctx) => {
  const b = await openPage(ctx)
  const name = uniq('inspector')
  const topic = `realtime:${name}`

  // The default tenant is signed with the public development secret here,
  // so the page offers (and fills in) the development token.
  expectEqual(await b.eval(`document.getElementById('use-dev-token').hidden`), false, 'development token offered')
  expectTrue((await b.eval(`document.getElementById('token').value`)).split('.').length === 3, 'token filled in')
  expectEqual(await b.eval(`document.getElementById('host').value`), `${inst.host}:${inst.port}`, 'host defaults to the page host')

  await fill(b, 'topic', name)
  await fill(b, 'presence-key', 'page')
  await click(b, 'join')
  await b.waitFor(`document.getElementById('channel-state').textContent === ${js(`joined ${topic}`)}`, { what: 'the join reply', timeout: 8000 })
  await b.waitFor(`document.querySelector('#presence-list li.empty') !== null`, { what: 'the empty presence list after presence_state' })

  // A broadcast sent over REST shows in the live log with its payload.
  const res = await fetch(`${base}/api/broadcast`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', apikey: token({}, { secret: inst.secret }) },
    body: js({ messages: [{ topic: name, event: 'from-rest', payload: { marker: 'rest-7f3a' } }] }),
  })
  expectEqual(res.status, 202, 'POST /api/broadcast')
  await b.waitFor(logWith('broadcast', 'rest-7f3a'), { what: 'the REST broadcast in the log' })

  // A realtime-js client on the same channel gets what the page sends.
  const client = makeClient(ctx, { label: 'realtime-js' })
  const ch = client.channel(name, { config: { presence: { key: 'js-client' } } })
  const got = new Inbox('realtime-js broadcasts')
  ch.on('broadcast', { event: 'from-page' }, got.push)
  await subscribe(ctx, ch)
  await fill(b, 'bc-event', 'from-page')
  await fill(b, 'bc-payload', js({ marker: 'page-91c2' }))
  await click(b, 'send')
  const m = await got.wait(() => true, { ctx, what: 'the page broadcast', timeout: 5000 })
  expectEqual(m.payload, { marker: 'page-91c2' }, 'payload realtime-js received')

  // realtime-js tracks: the page lists it; untracks: it is gone.
  await ch.track({ user: 'js' })
  await b.waitFor(`${presenceKeys}.includes('js-client')`, { what: 'js-client in the presence list' })
  // The page tracks itself too.
  await fill(b, 'track-payload', js({ user: 'browser' }))
  await click(b, 'track')
  await b.waitFor(`${presenceKeys}.includes('page')`, { what: 'page in its own presence list' })
  mkdirSync(LOG_DIR, { recursive: true })
  const shot = path.join(LOG_DIR, 'inspector.png')
  writeFileSync(shot, await b.screenshot())
  ctx.note(`screenshot: ${shot}`)
  await ch.untrack()
  await b.waitFor(`!${presenceKeys}.includes('js-client')`, { what: 'js-client gone from the presence list' })
  await b.waitFor(logWith('presence_diff', 'js-client'), { what: 'the presence_diff entries in the log' })
  await click(b, 'untrack')
  await b.waitFor(`${presenceKeys}.length === 0`, { what: 'the page gone from its own presence list' })
  console.log(`# screenshot: ${shot}`)
}, { timeout: 60000 })

test('status: per-shard connections, channels and messages/s from /metrics', async (ctx) => {
  const b = await Browser.launch({ height: 700 })
  ctx.defer(() => b.close())
  // One connection of our own, so some shard shows it.
  const client = makeClient(ctx, { label: 'realtime-js' })
  await subscribe(ctx, client.channel(uniq('status')))
  await b.navigate(`${base}/status`)
  await b.waitFor(`document.querySelectorAll('#shards tbody tr').length > 0`, { what: 'a row per shard' })
  // The second sample gives the rates.
  await b.waitFor(`[...document.querySelectorAll('#shards tbody tr')].every((tr) => tr.cells[4].textContent !== '…')`, { what: 'messages/s from two samples', timeout: 8000 })
  const conns = await b.eval(`[...document.querySelectorAll('#shards tbody tr')].reduce((n, tr) => n + Number(tr.cells[1].textContent), 0)`)
  expectTrue(conns >= 1, `connections over the shards: ${conns}`)
  mkdirSync(LOG_DIR, { recursive: true })
  const shot = path.join(LOG_DIR, 'status.png')
  writeFileSync(shot, await b.screenshot())
  console.log(`# screenshot: ${shot}`)
}, { timeout: 30000 })
