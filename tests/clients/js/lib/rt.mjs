// realtime-js helpers: a recording `ws` transport, client construction with
// cleanup, and promise wrappers around subscribe/event callbacks.

import WebSocket from 'ws'
import { RealtimeClient } from '@supabase/realtime-js'
import { config } from './config.mjs'
import { token as mintToken } from './jwt.mjs'
import { decodeBinary, showFrame, sleep } from './wire.mjs'
import { describeValue } from './harness.mjs'

/**
 * Returns a WebSocket class (the `transport` option) whose instances record
 * every frame in `rec.sockets[i].frames` as {dir, binary, data}.
 */
export function recordingTransport(rec, extraOptions = {}) {
  return class RecordingWebSocket extends WebSocket {
    constructor(address, protocols) {
      super(address, protocols, { perMessageDeflate: false, ...extraOptions })
      this.frames = []
      rec.sockets.push(this)
      this.on('message', (data, isBinary) => {
        const buf = Buffer.isBuffer(data) ? data : Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data)
        this.frames.push({ dir: 'in', at: Date.now(), binary: isBinary, data: isBinary ? Buffer.from(buf) : buf.toString('utf8') })
      })
      this.on('error', () => {})
    }

    send(data, ...rest) {
      const isBinary = typeof data !== 'string'
      const buf = isBinary ? Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data) : null
      this.frames.push({ dir: 'out', at: Date.now(), binary: isBinary, data: isBinary ? buf : data })
      return super.send(data, ...rest)
    }
  }
}

/**
 * A connected-on-demand realtime-js client for `instance`, cleaned up after the test.
 * opts: vsn, token, instance, path ('/socket' or '/realtime/v1'), heartbeatIntervalMs,
 *       timeout, accessToken, clientOptions (merged last).
 */
export function makeClient(ctx, opts = {}) {
  const inst = opts.instance || config.main
  const rec = { sockets: [] }
  const apikey = opts.token || mintToken({}, { secret: inst.secret })
  const endpoint = `ws://${inst.host}:${inst.port}${opts.path || '/socket'}`
  const client = new RealtimeClient(endpoint, {
    transport: recordingTransport(rec),
    params: { apikey },
    vsn: opts.vsn || '2.0.0',
    timeout: opts.timeout ?? 5000,
    heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 25000,
    // Never linger in reconnect loops after the server closes us in a test.
    reconnectAfterMs: opts.reconnectAfterMs || (() => 500),
    logger: opts.logger,
    ...(opts.clientOptions || {}),
  })
  client.__rec = rec
  client.__label = opts.label || `rt-${opts.vsn || '2.0.0'}`
  ctx.defer(async () => {
    try {
      await Promise.race([client.removeAllChannels(), sleep(1500)])
    } catch {}
    try {
      await Promise.race([client.disconnect(), sleep(1000)])
    } catch {}
    for (const s of rec.sockets) {
      try {
        s.terminate()
      } catch {}
    }
  })
  ctx.frameSources.push({
    label: client.__label,
    dump: () => framesOf(client).slice(-40).map((f) => `      ${showFrame(f)}`).join('\n'),
  })
  return client
}

/** All frames a realtime-js client exchanged, over all its sockets. */
export function framesOf(client) {
  return client.__rec.sockets.flatMap((s) => s.frames)
}

/** The raw socket currently used by the client. */
export function currentSocket(client) {
  return client.__rec.sockets[client.__rec.sockets.length - 1]
}

/** Decoded inbound frames of a client (v2 arrays decoded into objects, binary decoded). */
export function inbound(client) {
  const v2 = client.vsn === '2.0.0'
  return framesOf(client)
    .filter((f) => f.dir === 'in')
    .map((f) => {
      if (f.binary) {
        try {
          return { binary: true, ...decodeBinary(f.data), raw: f }
        } catch (e) {
          return { undecodable: true, raw: f }
        }
      }
      const v = JSON.parse(f.data)
      if (v2) {
        const [join_ref, ref, topic, event, payload] = v
        return { text: true, arr: v, join_ref, ref, topic, event, payload, raw: f }
      }
      return { text: true, obj: v, topic: v.topic, event: v.event, payload: v.payload, ref: v.ref, raw: f }
    })
}

export function outbound(client) {
  return framesOf(client).filter((f) => f.dir === 'out')
}

/** Error carrying the frames of every client of the test. */
export function frameError(ctx, message) {
  const e = new Error(message)
  if (ctx.frameSources.length > 0) e.frames = ctx.frameDump()
  return e
}

/** subscribe() as a promise: resolves on SUBSCRIBED, rejects on anything else. */
export function subscribe(ctx, channel, timeout = 6000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(frameError(ctx, `subscribe ${channel.topic}: no status within ${timeout} ms`)), timeout)
    channel.subscribe((status, err) => {
      clearTimeout(timer)
      if (status === 'SUBSCRIBED') resolve(status)
      else reject(frameError(ctx, `subscribe ${channel.topic}: ${status}${err ? ` (${err.message})` : ''}`))
    })
  })
}

/** subscribe() resolving with the first {status, err} whatever it is. */
export function subscribeOutcome(channel, timeout = 6000) {
  return new Promise((resolve) => {
    let done = false
    const timer = setTimeout(() => {
      done = true
      resolve({ status: 'NO_STATUS', err: null })
    }, timeout)
    channel.subscribe((status, err) => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolve({ status, err })
    })
  })
}

/**
 * Collects callback invocations into an array and lets a test wait for the
 * n-th one matching a predicate.
 */
export class Inbox {
  constructor(label = 'inbox') {
    this.label = label
    this.items = []
    this.waiters = new Set()
    this.push = this.push.bind(this)
  }

  push(item) {
    this.items.push(item)
    for (const w of [...this.waiters]) w()
  }

  wait(pred = () => true, { timeout = 3000, what, ctx } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.items.find((x) => {
          try {
            return pred(x)
          } catch {
            return false
          }
        })
        if (found !== undefined) {
          clearTimeout(timer)
          this.waiters.delete(check)
          resolve(found)
        }
      }
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        const e = ctx ? frameError(ctx, '') : new Error('')
        e.message = `${this.label}: timed out after ${timeout} ms waiting for ${what || 'an item'}; got ${describeValue(this.items).slice(0, 1500)}`
        reject(e)
      }, timeout)
      this.waiters.add(check)
      check()
    })
  }

  async none(pred = () => true, ms = 500, what = 'nothing') {
    await sleep(ms)
    const found = this.items.find((x) => {
      try {
        return pred(x)
      } catch {
        return false
      }
    })
    if (found !== undefined) throw new Error(`${this.label}: expected ${what}, got ${describeValue(found)}`)
  }
}

/** Waits until `cond()` is true (polling). */
export async function until(cond, { timeout = 3000, what = 'condition', ctx } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    let ok = false
    try {
      ok = cond()
    } catch {}
    if (ok) return
    if (Date.now() > deadline) throw ctx ? frameError(ctx, `timed out after ${timeout} ms waiting for ${what}`) : new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}
