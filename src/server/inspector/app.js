// The inspector's own Phoenix v2 client (JSON arrays [join_ref, ref, topic,
// event, payload] over /socket/websocket?vsn=2.0.0) and the page around it.
// No dependencies; everything it loads comes from this server.
'use strict'

const HEARTBEAT_MS = 25000
const REPLY_TIMEOUT_MS = 10000
const $ = (id) => document.getElementById(id)

/** A minimal Phoenix socket: connect, heartbeats, pushes with replies. */
class PhoenixSocket {
  constructor(url, onFrame, onState) {
    this.url = url
    this.onFrame = onFrame
    this.onState = onState
    this.ref = 0
    this.pending = new Map() // ref -> {resolve, timer}
    this.ws = null
    this.heartbeat = null
  }

  connect() {
    const ws = new WebSocket(this.url)
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    ws.onopen = () => {
      this.onState('open')
      this.heartbeat = setInterval(() => this.push('phoenix', 'heartbeat', {}, null), HEARTBEAT_MS)
    }
    ws.onclose = (e) => {
      clearInterval(this.heartbeat)
      for (const { resolve, timer } of this.pending.values()) {
        clearTimeout(timer)
        resolve({ status: 'error', response: { reason: 'socket closed' } })
      }
      this.pending.clear()
      this.onState('closed', e)
    }
    ws.onerror = () => this.onState('error')
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') {
        let frame
        try {
          frame = JSON.parse(e.data)
        } catch (err) {
          this.onFrame({ raw: e.data, error: String(err) })
          return
        }
        const [joinRef, ref, topic, event, payload] = frame
        if (event === 'phx_reply' && this.pending.has(ref)) {
          const p = this.pending.get(ref)
          this.pending.delete(ref)
          clearTimeout(p.timer)
          p.resolve(payload)
        }
        this.onFrame({ joinRef, ref, topic, event, payload })
      } else {
        this.onFrame({ binary: new Uint8Array(e.data) })
      }
    }
  }

  close() {
    if (this.ws) this.ws.close(1000)
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN
  }

  /** Sends a frame; resolves with the reply payload ({status, response}) or a timeout. */
  push(topic, event, payload, joinRef) {
    const ref = String(++this.ref)
    const frame = [joinRef, ref, topic, event, payload]
    if (!this.open) return Promise.resolve({ status: 'error', response: { reason: 'not connected' } })
    this.ws.send(JSON.stringify(frame))
    if (topic !== 'phoenix') logEvent('out', topic, event, payload, ref)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref)
        resolve({ status: 'timeout', response: {} })
      }, REPLY_TIMEOUT_MS)
      this.pending.set(ref, { resolve, timer })
    })
  }
}

// ---- page state

const state = {
  socket: null,
  topic: null, // the joined channel's topic (`realtime:<name>`)
  joinRef: null,
  presence: {}, // key -> metas[]
  devToken: null,
}

function setState(id, text, cls) {
  const el = $(id)
  el.textContent = text
  el.className = `state ${cls}`
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ')
}

/** Appends one entry to the live log: time, direction, topic, event, payload. */
function logEvent(dir, topic, event, payload, ref) {
  const li = document.createElement('li')
  li.className = `dir-${dir}`
  li.dataset.topic = topic ?? ''
  li.dataset.event = event ?? ''
  const meta = document.createElement('div')
  meta.className = 'meta'
  const arrow = { in: '←', out: '→', err: '!' }[dir] ?? dir
  meta.innerHTML = `<time></time> <b></b> <span class="topic"></span> <span class="event"></span>`
  meta.querySelector('time').textContent = new Date().toISOString().slice(11, 23)
  meta.querySelector('b').textContent = arrow
  meta.querySelector('.topic').textContent = topic ?? ''
  meta.querySelector('.event').textContent = event + (ref ? ` (ref ${ref})` : '')
  const pre = document.createElement('pre')
  pre.textContent = payload instanceof Uint8Array ? `binary, ${payload.length} bytes:\n${hex(payload)}` : JSON.stringify(payload, null, 2)
  li.append(meta, pre)
  const log = $('log')
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40
  log.append(li)
  if (atBottom) log.scrollTop = log.scrollHeight
}

/** Topic and event of a binary broadcast frame (kind 4), best effort. */
function binaryLabel(b) {
  try {
    if (b[0] === 4) {
      const dec = new TextDecoder()
      const [tl, el] = [b[1], b[2]]
      return { topic: dec.decode(b.subarray(5, 5 + tl)), event: `broadcast (binary) ${dec.decode(b.subarray(5 + tl, 5 + tl + el))}` }
    }
  } catch (_) {}
  return { topic: '', event: `binary frame (kind ${b[0]})` }
}

function onFrame(f) {
  if (f.binary) {
    const { topic, event } = binaryLabel(f.binary)
    logEvent('in', topic, event, f.binary)
    return
  }
  if (f.raw !== undefined) {
    logEvent('err', '', 'unparsable frame', f.raw)
    return
  }
  if (f.topic === 'phoenix' && f.event === 'phx_reply' && f.payload?.status === 'ok') return // heartbeat replies
  logEvent('in', f.topic, f.event, f.payload, f.ref)
  if (f.topic !== state.topic) return
  if (f.event === 'presence_state') {
    state.presence = {}
    for (const [key, v] of Object.entries(f.payload)) state.presence[key] = [...(v.metas ?? [])]
    renderPresence()
  } else if (f.event === 'presence_diff') {
    for (const [key, v] of Object.entries(f.payload.leaves ?? {})) {
      const gone = new Set((v.metas ?? []).map((m) => m.phx_ref))
      const left = (state.presence[key] ?? []).filter((m) => !gone.has(m.phx_ref))
      if (left.length) state.presence[key] = left
      else delete state.presence[key]
    }
    for (const [key, v] of Object.entries(f.payload.joins ?? {})) {
      state.presence[key] = [...(state.presence[key] ?? []), ...(v.metas ?? [])]
    }
    renderPresence()
  } else if (f.event === 'phx_close' || f.event === 'phx_error') {
    setChannel(null)
  }
}

function renderPresence() {
  const ul = $('presence-list')
  ul.replaceChildren()
  for (const [key, metas] of Object.entries(state.presence)) {
    for (const m of metas) {
      const li = document.createElement('li')
      li.dataset.key = key
      const { phx_ref: _r, ...rest } = m
      li.textContent = `${key}: ${JSON.stringify(rest)}`
      ul.append(li)
    }
  }
  if (!ul.children.length) {
    const li = document.createElement('li')
    li.className = 'empty'
    li.textContent = state.topic ? '(nobody present)' : '(not joined)'
    ul.append(li)
  }
}

function setChannel(topic, joinRef = null) {
  state.topic = topic
  state.joinRef = joinRef
  if (!topic) state.presence = {}
  setState('channel-state', topic ? `joined ${topic}` : 'not joined', topic ? 'on' : 'off')
  renderPresence()
}

function parseJson(id, what) {
  const text = $(id).value.trim()
  if (!text) return undefined
  try {
    return JSON.parse(text)
  } catch (e) {
    logEvent('err', '', `${what} is not JSON`, String(e))
    throw e
  }
}

// ---- actions

function connect() {
  if (state.socket) state.socket.close()
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const host = $('host').value.trim() || location.host
  const url = `${proto}//${host}/socket/websocket?apikey=${encodeURIComponent($('token').value.trim())}&vsn=2.0.0`
  const socket = new PhoenixSocket(url, onFrame, (s, e) => {
    if (socket !== state.socket) return
    if (s === 'open') setState('conn-state', `connected to ${host}`, 'on')
    if (s === 'error') setState('conn-state', 'connection error', 'err')
    if (s === 'closed') {
      setState('conn-state', `closed (${e?.code ?? '?'}${e?.reason ? `: ${e.reason}` : ''})`, e?.code === 1000 ? 'off' : 'err')
      logEvent('err', '', 'socket closed', { code: e?.code, reason: e?.reason })
      setChannel(null)
    }
  })
  state.socket = socket
  setState('conn-state', 'connecting', 'off')
  socket.connect()
  return new Promise((resolve) => {
    const deadline = Date.now() + REPLY_TIMEOUT_MS
    const check = () => (socket.open || Date.now() > deadline || socket.ws.readyState === WebSocket.CLOSED ? resolve(socket.open) : setTimeout(check, 50))
    check()
  })
}

async function join() {
  if (!state.socket || !state.socket.open) {
    if (!(await connect())) return
  }
  if (state.topic) await leave()
  const name = $('topic').value.trim()
  const topic = name.startsWith('realtime:') ? name : `realtime:${name}`
  const config = {
    broadcast: { self: $('self').checked, ack: false },
    presence: { key: $('presence-key').value.trim(), enabled: true },
    postgres_changes: parseJson('pg-changes', 'Postgres Changes bindings') ?? [],
    private: $('private').checked,
  }
  const token = $('token').value.trim()
  const joinRef = String(state.socket.ref + 1)
  setState('channel-state', `joining ${topic}`, 'off')
  const reply = await state.socket.push(topic, 'phx_join', { config, access_token: token || undefined }, joinRef)
  if (reply.status === 'ok') setChannel(topic, joinRef)
  else setState('channel-state', `join ${reply.status}: ${JSON.stringify(reply.response)}`, 'err')
}

async function leave() {
  if (!state.topic || !state.socket) return
  const topic = state.topic
  const joinRef = state.joinRef
  setChannel(null)
  await state.socket.push(topic, 'phx_leave', {}, joinRef)
}

function channelPush(event, payload) {
  if (!state.topic) {
    logEvent('err', '', 'join a channel first', {})
    return Promise.resolve(null)
  }
  return state.socket.push(state.topic, event, payload, state.joinRef)
}

function sendBroadcast() {
  const payload = parseJson('bc-payload', 'broadcast payload') ?? {}
  return channelPush('broadcast', { type: 'broadcast', event: $('bc-event').value.trim() || 'message', payload })
}

const track = () => channelPush('presence', { type: 'presence', event: 'track', payload: parseJson('track-payload', 'presence state') ?? {} })
const untrack = () => channelPush('presence', { type: 'presence', event: 'untrack' })

async function loadConfig() {
  try {
    const res = await fetch('/inspector/config.json', { cache: 'no-store' })
    const cfg = await res.json()
    state.devToken = cfg.dev_token
    const onDefault = () => ($('host').value.trim() || location.host) === location.host
    if (cfg.dev_token) {
      $('use-dev-token').hidden = false
      $('use-dev-token').title = `role anon on the default tenant (${cfg.default_tenant}), signed with the public development secret`
      if (!$('token').value && onDefault()) $('token').value = cfg.dev_token
    }
  } catch (e) {
    logEvent('err', '', 'could not read /inspector/config.json', String(e))
  }
}

function init() {
  $('host').value = location.host
  $('connect').onclick = () => connect()
  $('disconnect').onclick = () => state.socket?.close()
  $('use-dev-token').onclick = () => {
    $('token').value = state.devToken ?? ''
  }
  $('join').onclick = () => join()
  $('leave').onclick = () => leave()
  $('send').onclick = () => sendBroadcast()
  $('track').onclick = () => track()
  $('untrack').onclick = () => untrack()
  $('clear-log').onclick = () => $('log').replaceChildren()
  renderPresence()
  window.inspector = { state, connect, join, leave, sendBroadcast, track, untrack, ready: loadConfig() }
}

init()
