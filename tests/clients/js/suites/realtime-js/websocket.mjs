// WebSocket-level behaviour real clients rely on: control frames, fragmented
// messages, the close handshake, the frame size cap, and fan-out to many
// sockets (spread over shards) with exactly-once delivery.

import { test } from '../../lib/harness.mjs'
import { expectTrue, expectMatch } from '../../lib/match.mjs'
import { makeClient, subscribe, Inbox, until } from '../../lib/rt.mjs'
import { RawClient, sleep } from '../../lib/wire.mjs'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { config } from '../../lib/config.mjs'
import { token } from '../../lib/jwt.mjs'
import { uniq } from '../common.mjs'

test('websocket: a ping is answered with a pong carrying the same data', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  const pong = new Promise((resolve) => raw.ws.once('pong', (d) => resolve(d.toString())))
  raw.ws.ping('are-you-there')
  const got = await Promise.race([pong, sleep(2000).then(() => null)])
  expectTrue(got === 'are-you-there', `pong payload: ${got}`)
})

test('websocket: a message fragmented over three frames is reassembled', async (ctx) => {
  const topic = `realtime:${uniq('frag')}`
  const raw = await RawClient.connect({ ctx })
  const { joinRef } = await raw.join(topic, { config: { broadcast: { self: true, ack: true } } })
  const text = JSON.stringify([joinRef, '900', topic, 'broadcast', { type: 'broadcast', event: 'frag', payload: { s: 'y'.repeat(5000) } }])
  const a = text.slice(0, 10)
  const b = text.slice(10, 3000)
  const c = text.slice(3000)
  raw.ws.send(a, { fin: false })
  raw.ws.send(b, { fin: false })
  raw.ws.send(c, { fin: true })
  await raw.reply('900', [joinRef, '900', topic, 'phx_reply', { status: 'ok', response: {} }])
  await raw.waitFor((m) => m.text && m.event === 'broadcast' && m.payload.event === 'frag', { what: 'self delivery of the fragmented broadcast' })
})

test('websocket: client close (1000) is answered with a close frame', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  await raw.join(`realtime:${uniq('close')}`)
  raw.ws.close(1000, 'bye')
  const info = await Promise.race([raw.closed, sleep(3000).then(() => null)])
  expectTrue(info !== null, 'no close within 3 s')
  expectMatch(info.code, 1000, 'close code seen by the client (1006 means the server never sent its close frame)')
})

test('websocket: a frame header announcing over 5 000 000 bytes gets close 1009', async () => {
  // Raw TCP so we can announce a big frame without sending it, then read what the
  // server answers (a client still writing 5 MB may only see a reset, 1006).
  const sock = net.connect(config.main.port, config.main.host)
  const chunks = []
  sock.on('data', (d) => chunks.push(d))
  sock.on('error', () => {})
  await new Promise((r) => sock.once('connect', r))
  const key = randomBytes(16).toString('base64')
  sock.write(
    `GET /socket/websocket?apikey=${token()}&vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  )
  await until(() => Buffer.concat(chunks).includes('\r\n\r\n'), { what: 'handshake response' })
  const all = Buffer.concat(chunks)
  const headEnd = all.indexOf('\r\n\r\n') + 4
  expectTrue(all.subarray(0, 12).toString() === 'HTTP/1.1 101', `handshake: ${all.subarray(0, 40).toString()}`)
  chunks.length = 0
  if (all.length > headEnd) chunks.push(all.subarray(headEnd))
  // FIN + text, MASK + 127 (64-bit length) = 5_000_100, mask key, then a few payload bytes.
  const len = Buffer.alloc(8)
  len.writeBigUInt64BE(5_000_100n)
  sock.write(Buffer.concat([Buffer.from([0x81, 0xff]), len, Buffer.from([1, 2, 3, 4]), Buffer.alloc(64, 0x41)]))
  const closed = new Promise((r) => sock.once('close', r))
  await Promise.race([closed, sleep(3000)])
  const got = Buffer.concat(chunks)
  sock.destroy()
  expectTrue(got.length >= 4, `server sent ${got.length} bytes after the oversized header (expected a close frame)`)
  expectMatch({ opcode: got[0] & 0x0f, code: got.readUInt16BE(2) }, { opcode: 8, code: 1009 }, 'server close frame')
})

test('websocket: a 4 MB frame (under the cap) is accepted', async (ctx) => {
  const raw = await RawClient.connect({ ctx })
  raw.sendText(JSON.stringify([null, '2', 'phoenix', 'heartbeat', { pad: 'z'.repeat(4_000_000) }]))
  await raw.reply('2', [null, '2', 'phoenix', 'phx_reply', { status: 'ok', response: {} }], { timeout: 5000 })
})

test('fan-out: one broadcast reaches 60 subscribers on 60 sockets exactly once', async (ctx) => {
  const sub = uniq('fan')
  const receivers = []
  for (let i = 0; i < 60; i++) {
    const c = makeClient(ctx, { label: `r${i}` })
    const ch = c.channel(sub)
    const inbox = new Inbox(`r${i}`)
    ch.on('broadcast', { event: 'all' }, inbox.push)
    receivers.push({ c, ch, inbox })
  }
  await Promise.all(receivers.map((r) => subscribe(ctx, r.ch, 10000)))
  const sender = makeClient(ctx, { label: 'sender' })
  const sch = sender.channel(sub)
  await subscribe(ctx, sch)
  await sch.send({ type: 'broadcast', event: 'all', payload: { n: 1 } })
  await until(() => receivers.every((r) => r.inbox.items.length >= 1), {
    ctx,
    what: 'every receiver to get the broadcast',
    timeout: 5000,
  })
  await sleep(300)
  const counts = receivers.map((r) => r.inbox.items.length)
  expectTrue(
    counts.every((n) => n === 1),
    `delivery counts per receiver: ${JSON.stringify(counts)}`
  )
})
