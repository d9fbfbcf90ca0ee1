// Small helpers shared by the suites.

import { randomBytes } from 'node:crypto'
import { decodeClientBinary } from '../lib/wire.mjs'
import { outbound, inbound } from '../lib/rt.mjs'

/** A fresh sub-topic name so tests never see each other's traffic. */
export function uniq(prefix = 'room') {
  return `${prefix}-${randomBytes(4).toString('hex')}`
}

export const PHX_REF = /^[A-Za-z0-9_-]{16}$/
export const UUID_V1 = /^[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i

export const joinRefOf = (channel) => channel.joinPush.ref

/**
 * Decoded outbound pushes of a realtime-js client: {kind:'text'|'bin3'|'bin0', joinRef, ref, topic, event, payload|userEvent...}.
 */
export function pushesOf(client) {
  const v2 = client.vsn === '2.0.0'
  return outbound(client).map((f) => {
    if (f.binary) {
      const d = decodeClientBinary(f.data)
      return { kind: `bin${d.bin}`, ...d, raw: f }
    }
    const v = JSON.parse(f.data)
    if (v2) return { kind: 'text', joinRef: v[0], ref: v[1], topic: v[2], event: v[3], payload: v[4], arr: v, raw: f }
    return { kind: 'text', joinRef: v.join_ref, ref: v.ref, topic: v.topic, event: v.event, payload: v.payload, obj: v, raw: f }
  })
}

/** The last broadcast push a realtime-js client sent on `topic`. */
export function lastBroadcastPush(client, topic) {
  const ps = pushesOf(client).filter((p) => p.topic === topic && (p.kind === 'bin3' || p.event === 'broadcast'))
  return ps[ps.length - 1]
}

/** Inbound messages of a client for a topic. */
export function inboundOn(client, topic) {
  return inbound(client).filter((m) => m.topic === topic)
}

/** The wire shape of a frame: the v2 array or the v1 object. */
export const wire = (m) => m.arr || m.obj

export function bytes(n, seed = 7) {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}
