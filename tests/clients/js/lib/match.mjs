// Structural matching of decoded frames against expected patterns.
//
// A pattern is plain JSON compared exactly (objects must have exactly the same
// keys), except:
//   - a RegExp matches a string it accepts,
//   - a function is a predicate (give it a `label` for readable reports),
//   - `ANY` matches any value (the key must still be present),
//   - `partial(obj)` matches an object that has at least those keys.

import { MismatchError, describeValue } from './harness.mjs'

export const ANY = Object.assign(() => true, { label: 'any' })
export const ANY_STRING = Object.assign((v) => typeof v === 'string', { label: 'any string' })
export const ANY_INT = Object.assign((v) => Number.isInteger(v), { label: 'any integer' })

const PARTIAL = Symbol('partial')
export function partial(obj) {
  return { [PARTIAL]: true, obj }
}

export function pred(label, fn) {
  return Object.assign((v) => fn(v), { label })
}

/** Returns null if `value` matches `pattern`, else a path + reason string. */
export function mismatch(value, pattern, path = '$') {
  if (typeof pattern === 'function') {
    let ok = false
    try {
      ok = pattern(value)
    } catch {
      ok = false
    }
    return ok ? null : `${path}: ${describeValue(value)} does not satisfy <${pattern.label || 'predicate'}>`
  }
  if (pattern instanceof RegExp) {
    return typeof value === 'string' && pattern.test(value)
      ? null
      : `${path}: ${describeValue(value)} does not match /${pattern.source}/`
  }
  if (pattern && pattern[PARTIAL]) {
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      return `${path}: expected an object, saw ${describeValue(value)}`
    }
    for (const k of Object.keys(pattern.obj)) {
      if (!(k in value)) return `${path}: missing key "${k}"`
      const m = mismatch(value[k], pattern.obj[k], `${path}.${k}`)
      if (m) return m
    }
    return null
  }
  if (Array.isArray(pattern)) {
    if (!Array.isArray(value)) return `${path}: expected an array, saw ${describeValue(value)}`
    if (value.length !== pattern.length) {
      return `${path}: expected array of length ${pattern.length}, saw length ${value.length}`
    }
    for (let i = 0; i < pattern.length; i++) {
      const m = mismatch(value[i], pattern[i], `${path}[${i}]`)
      if (m) return m
    }
    return null
  }
  if (pattern && typeof pattern === 'object') {
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      return `${path}: expected an object, saw ${describeValue(value)}`
    }
    const pk = Object.keys(pattern).sort()
    const vk = Object.keys(value).sort()
    const missing = pk.filter((k) => !vk.includes(k))
    const extra = vk.filter((k) => !pk.includes(k))
    if (missing.length || extra.length) {
      return `${path}: keys differ (missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(extra)})`
    }
    for (const k of pk) {
      const m = mismatch(value[k], pattern[k], `${path}.${k}`)
      if (m) return m
    }
    return null
  }
  return Object.is(value, pattern) || value === pattern
    ? null
    : `${path}: expected ${describeValue(pattern)}, saw ${describeValue(value)}`
}

export function matches(value, pattern) {
  return mismatch(value, pattern) === null
}

/** Throws a MismatchError (expected vs seen) unless `value` matches `pattern`. */
export function expectMatch(value, pattern, what = 'value') {
  const m = mismatch(value, pattern)
  if (m) throw new MismatchError(`${what} mismatch: ${m}`, pattern, value)
}

export function expectEqual(seen, expected, what = 'value') {
  const m = mismatch(seen, expected)
  if (m) throw new MismatchError(`${what}: ${m}`, expected, seen)
}

export function expectTrue(cond, message) {
  if (!cond) throw new Error(message)
}
