// Hand-rolled JWT minting (HS256 with node:crypto) for the tests.

import { createHmac } from 'node:crypto'
import { config } from './config.mjs'

export function b64url(input) {
  return Buffer.from(input).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
}

export const nowSecs = () => Math.floor(Date.now() / 1000)

/** Signs `claims` with HS256 (or the given header) using `secret`. */
export function sign(claims, { secret = config.jwtSecret, header = { alg: 'HS256', typ: 'JWT' } } = {}) {
  const h = b64url(JSON.stringify(header))
  const p = b64url(JSON.stringify(claims))
  const input = `${h}.${p}`
  const sig = b64url(createHmac('sha256', secret).update(input).digest())
  return `${input}.${sig}`
}

/** A valid token: role anon, exp in one hour (override or drop claims via `extra`). */
export function token(extra = {}, opts = {}) {
  const claims = { role: 'anon', iat: nowSecs(), exp: nowSecs() + 3600, ...extra }
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k]
  return sign(claims, opts)
}

export function expiredToken(secondsAgo = 60, opts = {}) {
  return token({ iat: nowSecs() - secondsAgo - 10, exp: nowSecs() - secondsAgo }, opts)
}

/** A token with an asymmetric `alg` and a junk signature (the signer fails before verification). */
export function asymmetricToken(alg, kid) {
  const header = kid ? { alg, typ: 'JWT', kid } : { alg, typ: 'JWT' }
  const h = b64url(JSON.stringify(header))
  const p = b64url(JSON.stringify({ role: 'anon', exp: nowSecs() + 3600 }))
  return `${h}.${p}.${b64url('not-a-real-signature')}`
}
