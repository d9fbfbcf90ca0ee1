// The server's OpenAPI description as a checker of real answers: which
// documented operation a request is, whether its answer (status, media
// type, body, required headers) is one the description allows, and which
// documented responses were seen.
//
// The document is validated as OpenAPI by @seriousme/openapi-schema-validator;
// response bodies by Ajv in the JSON Schema 2020-12 dialect (OpenAPI 3.1's),
// against the schemas with every $ref resolved.

import { Validator } from '@seriousme/openapi-schema-validator'
import Ajv2020 from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'

export const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch']

/** Loads `raw` (the served document): {spec, errors} or throws if it is not valid OpenAPI 3.1. */
export async function loadSpec(raw) {
  const validator = new Validator()
  const res = await validator.validate(structuredClone(raw))
  if (!res.valid) {
    throw new Error(`not a valid OpenAPI document: ${JSON.stringify(res.errors).slice(0, 2000)}`)
  }
  if (validator.version !== '3.1' || !/^3\.1\.\d+$/.test(raw.openapi)) throw new Error(`OpenAPI version ${raw.openapi}, want 3.1.x`)
  return new Spec(raw, validator.resolveRefs())
}

const stripParams = (ct) => (ct || '').split(';')[0].trim().toLowerCase()

export class Spec {
  constructor(raw, resolved) {
    this.raw = raw
    this.resolved = resolved
    this.ajv = new Ajv2020({ strict: false, allErrors: true })
    addFormats(this.ajv)
    this.compiled = new Map()
    /** Coverage keys seen answered: `op key status` or a component response's $ref. */
    this.seen = new Map()
  }

  /** Every documented operation: {path, method, key, servers}. */
  operations() {
    const out = []
    for (const [path, item] of Object.entries(this.raw.paths)) {
      const { node: rawItem, ref } = this.#deref(item)
      const servers = (rawItem.servers || this.raw.servers || [{ url: '/' }]).map((s) => s.url.replace(/\/$/, ''))
      for (const method of METHODS) {
        if (!rawItem[method]) continue
        // Path items shared through $ref share their operations' coverage.
        out.push({ path, method, key: `${ref || path} ${method}`, servers })
      }
    }
    return out
  }

  /** The documented operation serving `method` on the concrete `urlPath` (query stripped), or null. */
  match(method, urlPath) {
    const p = urlPath.split('?')[0]
    for (const op of this.operations()) {
      if (op.method !== method.toLowerCase()) continue
      for (const prefix of op.servers) {
        if (prefix && !p.startsWith(`${prefix}/`)) continue
        const rest = p.slice(prefix.length)
        const re = new RegExp(`^${op.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`)
        if (re.test(rest)) return op
      }
    }
    return null
  }

  /** Every documented response: [{op, status, key, ref}], ref = a component's $ref or null. */
  responses() {
    const out = []
    for (const op of this.operations()) {
      const rawOp = this.#deref(this.raw.paths[op.path]).node[op.method]
      for (const [status, resp] of Object.entries(rawOp.responses)) {
        const ref = resp.$ref || null
        out.push({ op, status, ref, key: ref ? `${ref} (${status})` : `${op.key} ${status}` })
      }
    }
    return out
  }

  /**
   * Problems of one answer to `method urlPath` (empty when the description
   * allows it); records what was seen for coverage.
   */
  check(method, urlPath, res) {
    const op = this.match(method, urlPath)
    if (!op) return [`${method} ${urlPath}: no documented operation`]
    const what = `${method} ${urlPath} -> ${res.status}`
    const rawOp = this.#deref(this.raw.paths[op.path]).node[op.method]
    const rawResp = rawOp.responses[String(res.status)]
    if (!rawResp) return [`${what}: status not documented for ${op.method.toUpperCase()} ${op.path} (documented: ${Object.keys(rawOp.responses).join(', ')})`]
    const key = rawResp.$ref ? `${rawResp.$ref} (${res.status})` : `${op.key} ${res.status}`
    const doc = this.resolved.paths[op.path][op.method].responses[String(res.status)]
    const problems = []
    if (res.status !== 101 && res.headers['access-control-allow-origin'] !== '*') {
      problems.push(`${what}: no access-control-allow-origin: *`)
    }
    for (const [name, h] of Object.entries(doc.headers || {})) {
      const v = res.headers[name.toLowerCase()]
      if (v === undefined) {
        if (h.required) problems.push(`${what}: required header ${name} missing`)
        continue
      }
      const errs = this.#validate(h.schema || {}, v)
      if (errs) problems.push(`${what}: header ${name}: ${v}: ${errs}`)
    }
    const ct = res.headers['content-type']
    const empty = res.body === '' || res.body === undefined
    if (!ct) {
      if (!empty) problems.push(`${what}: a body without a content-type`)
      else if (doc.content && !doc['x-empty-body']) {
        problems.push(`${what}: empty body, but the description gives it ${Object.keys(doc.content).join(', ')} (and no x-empty-body)`)
      }
    } else {
      const media = Object.entries(doc.content || {}).find(([k]) => stripParams(k) === stripParams(ct))
      if (!media) {
        problems.push(`${what}: content-type ${ct} not documented (documented: ${Object.keys(doc.content || {}).join(', ') || 'none'})`)
      } else {
        let body = res.body
        if (stripParams(ct) === 'application/json') {
          try {
            body = JSON.parse(res.body)
          } catch {
            problems.push(`${what}: content-type ${ct} but the body is not JSON: ${res.body.slice(0, 200)}`)
          }
        }
        const errs = this.#validate(media[1].schema || {}, body)
        if (errs) problems.push(`${what}: body ${res.body.slice(0, 300)} does not match the schema: ${errs}`)
      }
    }
    if (problems.length === 0) this.seen.set(key, (this.seen.get(key) || 0) + 1)
    return problems
  }

  #validate(schema, value) {
    let v = this.compiled.get(schema)
    if (!v) {
      v = this.ajv.compile(schema)
      this.compiled.set(schema, v)
    }
    return v(value) ? null : this.ajv.errorsText(v.errors)
  }

  #deref(node) {
    if (!node.$ref) return { node, ref: null }
    const parts = node.$ref.replace(/^#\//, '').split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    let n = this.raw
    for (const p of parts) n = n[p]
    return { node: n, ref: node.$ref }
  }
}
