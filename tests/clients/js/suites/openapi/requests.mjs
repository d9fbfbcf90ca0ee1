// How the OpenAPI suite talks to the servers: plain requests (keep the
// answer's status, headers and body), WebSocket upgrade probes, and raw
// bytes for the answers Node's HTTP client cannot provoke (a transfer
// coding it does not speak, an oversized header).

import net from 'node:net'
import { httpRequest, upgradeProbe } from '../../lib/wire.mjs'

/** Sends `req` ({inst, method, path, headers, body, host, ws, raw}) and returns {status, headers, body}. */
export async function send(req) {
  if (req.ws) {
    const [path, q = ''] = req.path.split('?')
    return upgradeProbe({ instance: req.inst, method: req.method, path, query: Object.fromEntries(new URLSearchParams(q)), host: req.host, headers: req.headers })
  }
  if (req.raw) return rawRequest(req.inst, req.raw)
  return httpRequest({ instance: req.inst, method: req.method, path: req.path, headers: req.headers, body: req.body, host: req.host })
}

/** Writes `bytes` to the instance and parses the one answer, read until the server closes. */
export function rawRequest(inst, bytes) {
  return new Promise((resolve, reject) => {
    const chunks = []
    const sock = net.connect(inst.port, inst.host)
    sock.setTimeout(10000, () => sock.destroy(new Error('raw request timed out')))
    sock.on('data', (c) => chunks.push(c))
    sock.on('error', reject)
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const end = text.indexOf('\r\n\r\n')
      if (end < 0) return reject(new Error(`no answer head: ${JSON.stringify(text.slice(0, 200))}`))
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
      const headers = {}
      for (const l of lines) {
        const i = l.indexOf(':')
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4) })
    })
    sock.write(bytes)
  })
}
