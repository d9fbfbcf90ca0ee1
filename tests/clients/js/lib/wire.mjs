// Wire-level helpers: binary frame codecs (PROTOCOL §2.3), a raw Phoenix
// client over `ws` that records every frame, the HTTP upgrade probe used to
// read connect-error statuses and bodies, and small REST helpers.

import http from 'node:http'
import WebSocket from 'ws'
import { config } from './config.mjs'
import { token as mintToken } from './jwt.mjs'
import { matches, mismatch } from './match.mjs'
import { describeValue, MismatchError } from './harness.mjs'

// ---------------------------------------------------------------------------
// Binary codecs

function u8(n, what) {
  if (n > 255) throw new Error(`${what} longer than 255 bytes`)
  return n
}

/** Kind 0 push, client->server layout (phoenix.js binaryEncode). */
export function encodePush({ joinRef = '', ref = '', topic, event, payload }) {
  const jr = Buffer.from(joinRef ?? '')
  const r = Buffer.from(ref ?? '')
  const t = Buffer.from(topic)
  const e = Buffer.from(event)
  const header = Buffer.from([0, u8(jr.length, 'join_ref'), u8(r.length, 'ref'), u8(t.length, 'topic'), u8(e.length, 'event')])
  return Buffer.concat([header, jr, r, t, e, Buffer.from(payload)])
}

/** Kind 3 user broadcast push (realtime-js layout). encoding: 0 binary, 1 JSON. */
export function encodeUserBroadcastPush({ joinRef = '', ref = '', topic, userEvent, metadata = '', encoding = 1, payload }) {
  const jr = Buffer.from(joinRef ?? '')
  const r = Buffer.from(ref ?? '')
  const t = Buffer.from(topic)
  const e = Buffer.from(userEvent)
  const m = Buffer.from(metadata)
  const header = Buffer.from([
    3,
    u8(jr.length, 'join_ref'),
    u8(r.length, 'ref'),
    u8(t.length, 'topic'),
    u8(e.length, 'user_event'),
    u8(m.length, 'metadata'),
    encoding,
  ])
  const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload)
  return Buffer.concat([header, jr, r, t, e, m, body])
}

/** Decodes a server->client binary frame (kinds 0, 1, 2, 4). Throws on garbage. */
export function decodeBinary(buf) {
  const b = Buffer.from(buf)
  const kind = b[0]
  let off
  const take = (n) => {
    if (off + n > b.length) throw new Error(`binary frame kind ${kind} truncated`)
    const s = b.subarray(off, off + n)
    off += n
    return s
  }
  switch (kind) {
    case 0: {
      off = 4
      const [jrl, tl, el] = [b[1], b[2], b[3]]
      const joinRef = take(jrl).toString()
      const topic = take(tl).toString()
      const event = take(el).toString()
      return { bin: 0, joinRef, topic, event, payload: b.subarray(off) }
    }
    case 1: {
      off = 5
      const [jrl, rl, tl, sl] = [b[1], b[2], b[3], b[4]]
      const joinRef = take(jrl).toString()
      const ref = take(rl).toString()
      const topic = take(tl).toString()
      const status = take(sl).toString()
      return { bin: 1, joinRef, ref, topic, status, payload: b.subarray(off) }
    }
    case 2: {
      off = 3
      const [tl, el] = [b[1], b[2]]
      const topic = take(tl).toString()
      const event = take(el).toString()
      return { bin: 2, topic, event, payload: b.subarray(off) }
    }
    case 4: {
      off = 5
      const [tl, el, ml, encoding] = [b[1], b[2], b[3], b[4]]
      const topic = take(tl).toString()
      const userEvent = take(el).toString()
      const metadata = take(ml).toString()
      const payload = b.subarray(off)
      return { bin: 4, topic, userEvent, metadata, encoding, payload }
    }
    default:
      throw new Error(`unknown binary kind ${kind}`)
  }
}

/** Decodes a client->server binary frame (kind 0 push or kind 3 user broadcast push). */
export function decodeClientBinary(buf) {
  const b = Buffer.from(buf)
  const kind = b[0]
  let off
  const take = (n) => {
    if (off + n > b.length) throw new Error(`client binary frame kind ${kind} truncated`)
    const s = b.subarray(off, off + n)
    off += n
    return s
  }
  if (kind === 0) {
    off = 5
    const [jrl, rl, tl, el] = [b[1], b[2], b[3], b[4]]
    const joinRef = take(jrl).toString()
    const ref = take(rl).toString()
    const topic = take(tl).toString()
    const event = take(el).toString()
    return { bin: 0, joinRef, ref, topic, event, payload: b.subarray(off) }
  }
  if (kind === 3) {
    off = 7
    const [jrl, rl, tl, el, ml, encoding] = [b[1], b[2], b[3], b[4], b[5], b[6]]
    const joinRef = take(jrl).toString()
    const ref = take(rl).toString()
    const topic = take(tl).toString()
    const userEvent = take(el).toString()
    const metadata = take(ml).toString()
    return { bin: 3, joinRef, ref, topic, userEvent, metadata, encoding, payload: b.subarray(off) }
  }
  throw new Error(`unknown client binary kind ${kind}`)
}

/** Renders any recorded frame readably for failure reports. */
export function showFrame(f) {
  const arrow = f.dir === 'in' ? '<-' : '->'
  if (f.binary) {
    let decoded = ''
    try {
      const d = f.dir === 'in' ? decodeBinary(f.data) : decodeClientBinary(f.data)
      if (d) {
        const p = d.payload
        decoded = ` ${JSON.stringify({ ...d, payload: undefined })} payload=${JSON.stringify(p.toString('utf8')).slice(0, 300)}`
      }
    } catch (e) {
      decoded = ` (undecodable: ${e.message})`
    }
    return `${arrow} binary ${f.data.toString('hex').slice(0, 160)}${decoded}`
  }
  return `${arrow} ${f.data.length > 600 ? f.data.slice(0, 600) + '…' : f.data}`
}

// ---------------------------------------------------------------------------
// Raw client

/**
 * A Phoenix client speaking vsn 1.0.0 or 2.0.0 by hand. Every inbound frame is
 * decoded into `messages` (never consumed), so tests wait on predicates.
 *
 * Decoded message shapes:
 *   text v2: {text:true, join_ref, ref, topic, event, payload, raw}
 *   text v1: {text:true, obj, topic, event, payload, ref, raw}
 *   binary:  {binary:true, bin:<kind>, ...decodeBinary fields, raw}
 */
export class RawClient {
  constructor(ws, vsn) {
    this.ws = ws
    this.vsn = vsn
    this.frames = []
    this.messages = []
    this.waiters = new Set()
    this.refCounter = 0
    this.closeInfo = null
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() }
        resolve(this.closeInfo)
        this._notify()
      })
    })
    ws.on('error', () => {})
    ws.on('message', (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data)
      const frame = { dir: 'in', at: Date.now(), binary: isBinary, data: isBinary ? buf : buf.toString('utf8') }
      this.frames.push(frame)
      let msg
      try {
        msg = isBinary ? { binary: true, ...decodeBinary(buf), raw: frame } : this._decodeText(frame.data, frame)
      } catch (e) {
        msg = { undecodable: true, error: e.message, raw: frame }
      }
      this.messages.push(msg)
      this._notify()
    })
  }

  /** Opens a socket. opts: instance, path, vsn (null: omit), token (null: omit), host, headers, query. */
  static async connect(opts = {}) {
    const inst = opts.instance || config.main
    const vsn = opts.vsn === undefined ? '2.0.0' : opts.vsn
    const tok = opts.token === undefined ? mintToken({}, { secret: inst.secret }) : opts.token
    const q = new URLSearchParams()
    if (tok !== null) q.set('apikey', tok)
    if (vsn !== null) q.set('vsn', vsn)
    for (const [k, v] of Object.entries(opts.query || {})) q.set(k, v)
    const url = `ws://${inst.host}:${inst.port}${opts.path || '/socket/websocket'}?${q}`
    const headers = { ...(opts.headers || {}) }
    if (opts.host) headers.Host = opts.host
    const ws = new WebSocket(url, { headers, perMessageDeflate: false })
    ws.binaryType = 'nodebuffer'
    const client = new RawClient(ws, vsn || '1.0.0')
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)))
      ws.once('error', reject)
    })
    if (opts.ctx) {
      opts.ctx.defer(() => client.terminate())
      opts.ctx.frameSources.push({ label: opts.label || `raw-${vsn || 'default'}`, dump: () => client.dump() })
    }
    return client
  }

  _decodeText(text, frame) {
    const v = JSON.parse(text)
    if (this.vsn.startsWith('2')) {
      if (!Array.isArray(v)) throw new Error('v2 text frame is not an array')
      const [join_ref, ref, topic, event, payload] = v
      return { text: true, arr: v, join_ref, ref, topic, event, payload, raw: frame }
    }
    return { text: true, obj: v, topic: v.topic, event: v.event, payload: v.payload, ref: v.ref, raw: frame }
  }

  _notify() {
    for (const w of [...this.waiters]) w()
  }

  nextRef() {
    this.refCounter += 1
    return String(this.refCounter + 100)
  }

  sendText(text) {
    this.frames.push({ dir: 'out', at: Date.now(), binary: false, data: text })
    this.ws.send(text)
  }

  sendBinary(buf) {
    this.frames.push({ dir: 'out', at: Date.now(), binary: true, data: Buffer.from(buf) })
    this.ws.send(buf, { binary: true })
  }

  /** Sends a text message in this socket's serializer; returns the ref used. */
  send({ joinRef = null, ref, topic, event, payload = {} }) {
    const r = ref === undefined ? this.nextRef() : ref
    if (this.vsn.startsWith('2')) {
      this.sendText(JSON.stringify([joinRef, r, topic, event, payload]))
    } else {
      const obj = { topic, event, payload, ref: r }
      if (joinRef !== null) obj.join_ref = joinRef
      this.sendText(JSON.stringify(obj))
    }
    return r
  }

  /** Waits for the first message (already received or future) satisfying `pred`. */
  waitFor(pred, { timeout = 3000, what = 'message' } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.messages.find((x) => safe(pred, x))
        if (m) {
          cleanup()
          resolve(m)
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        cleanup()
        const err = new Error(`timed out after ${timeout} ms waiting for ${what}`)
        err.frames = this.dump()
        reject(err)
      }, timeout)
      const cleanup = () => {
        clearTimeout(timer)
        this.waiters.delete(check)
      }
      this.waiters.add(check)
      check()
    })
  }

  /** Waits for a text message matching a frame pattern (v2 array or v1 object). */
  waitForFrame(pattern, opts = {}) {
    const what = opts.what || `frame ${describeValue(pattern)}`
    return this.waitFor((m) => m.text && matches(this.vsn.startsWith('2') ? m.arr : m.obj, pattern), { ...opts, what })
  }

  /** Waits for the reply to `ref`, then checks the whole frame against `pattern` if given. */
  async reply(ref, pattern, opts = {}) {
    const m = await this.waitFor((x) => x.text && x.event === 'phx_reply' && x.ref === ref, {
      what: `phx_reply to ref ${ref}`,
      ...opts,
    })
    if (pattern !== undefined) this.expectFrame(m, pattern, `reply to ref ${ref}`)
    return m
  }

  expectFrame(m, pattern, what = 'frame') {
    const seen = this.vsn.startsWith('2') ? m.arr : m.obj
    const mm = mismatch(seen, pattern)
    if (mm) {
      const err = new MismatchError(`${what} mismatch: ${mm}`, pattern, seen)
      throw err
    }
  }

  /** Asserts no message satisfying `pred` arrives within `ms`. */
  async expectNone(pred, ms, what = 'unexpected message') {
    await sleep(ms)
    const m = this.messages.find((x) => safe(pred, x))
    if (m) {
      const err = new Error(`${what}: ${showFrame(m.raw)}`)
      err.frames = this.dump()
      throw err
    }
  }

  /** Joins `topic` with the given join payload; resolves with {joinRef, reply}. */
  async join(topic, payload = { config: {} }, opts = {}) {
    const ref = this.nextRef()
    this.send({ joinRef: ref, ref, topic, event: 'phx_join', payload })
    const reply = await this.reply(ref, undefined, { timeout: opts.timeout || 5000 })
    if (opts.expectOk !== false && reply.payload?.status !== 'ok') {
      const err = new Error(`join ${topic} failed: ${describeValue(reply.payload)}`)
      err.frames = this.dump()
      throw err
    }
    return { joinRef: ref, reply }
  }

  /** Sends a v2 kind 3 user broadcast. Returns the ref. */
  userBroadcast({ joinRef, topic, userEvent, payload, encoding = 1, metadata = '', ref }) {
    const r = ref === undefined ? this.nextRef() : ref
    const body = encoding === 1 && typeof payload !== 'string' && !Buffer.isBuffer(payload) ? JSON.stringify(payload) : payload
    this.sendBinary(encodeUserBroadcastPush({ joinRef, ref: r, topic, userEvent, metadata, encoding, payload: body }))
    return r
  }

  heartbeat() {
    return this.send({ joinRef: null, topic: 'phoenix', event: 'heartbeat', payload: {} })
  }

  dump(limit = 40) {
    const fs = this.frames.slice(-limit)
    return fs.map((f) => `      ${showFrame(f)}`).join('\n')
  }

  close() {
    try {
      this.ws.close()
    } catch {}
  }

  terminate() {
    try {
      this.ws.terminate()
    } catch {}
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN
  }
}

function safe(pred, x) {
  try {
    return pred(x)
  } catch {
    return false
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------
// HTTP helpers

/**
 * Sends a WebSocket upgrade request and reports what came back without
 * completing the handshake: {status, headers, body, ms}. status 101 = upgraded.
 */
export function upgradeProbe({ instance = config.main, path = '/socket/websocket', query = {}, host, headers = {}, method = 'GET' } = {}) {
  const q = new URLSearchParams(query).toString()
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: instance.host,
      port: instance.port,
      method,
      path: q ? `${path}?${q}` : path,
      headers: {
        Host: host || `${instance.host}:${instance.port}`,
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    })
    req.setTimeout(10000, () => req.destroy(new Error('upgrade probe timed out')))
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode, headers: res.headers, body: '', ms: Date.now() - started })
    })
    req.on('response', (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - started })
      )
    })
    req.on('error', reject)
    req.end()
  })
}

/** Plain HTTP request; resolves {status, headers, body(text), json(parsed or undefined)}. */
export function httpRequest({ instance = config.main, method = 'GET', path = '/', headers = {}, body, host } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
    const req = http.request({
      host: instance.host,
      port: instance.port,
      method,
      path,
      headers: {
        Host: host || `${instance.host}:${instance.port}`,
        ...(data ? { 'Content-Length': String(data.length) } : {}),
        ...headers,
      },
    })
    req.setTimeout(10000, () => req.destroy(new Error(`${method} ${path} timed out`)))
    req.on('response', (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json
        try {
          json = text ? JSON.parse(text) : undefined
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json })
      })
    })
    req.on('error', reject)
    if (data) req.write(data)
    req.end()
  })
}
