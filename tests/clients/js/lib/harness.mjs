// A tiny sequential test runner.
//
// Why hand-rolled: every suite must close with the plain line
// `N passed, N failed`, each test needs deferred cleanup of sockets even when
// it times out, and errors thrown asynchronously by client libraries (timers,
// socket callbacks) must fail the running test instead of killing the process.

import { inspect } from 'node:util'

const registry = []
let current = null

/** Registers a test. `opts.timeout` (ms) bounds the whole test body. */
export function test(name, fn, opts = {}) {
  registry.push({ name, fn, timeout: opts.timeout ?? 20000 })
}

/** Raised by the matcher; carries the expected pattern and the seen value. */
export class MismatchError extends Error {
  constructor(message, expected, seen) {
    super(message)
    this.expected = expected
    this.seen = seen
  }
}

export function describeValue(v) {
  if (Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
    const b = Buffer.from(v instanceof ArrayBuffer ? new Uint8Array(v) : v)
    return `<${b.length} bytes: ${b.toString('hex').slice(0, 200)}>`
  }
  try {
    return JSON.stringify(v, (_k, x) => {
      if (x instanceof RegExp) return `/${x.source}/`
      if (typeof x === 'function') return `<${x.label || x.name || 'predicate'}>`
      if (x && x.type === 'Buffer' && Array.isArray(x.data)) return `<bytes ${Buffer.from(x.data).toString('hex')}>`
      return x
    })
  } catch {
    return inspect(v, { depth: 6 })
  }
}

async function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function recordAsyncError(kind, err) {
  if (current) {
    current.asyncErrors.push(`${kind}: ${err && err.stack ? err.stack : describeValue(err)}`)
  } else {
    console.error(`# ${kind} outside a test:`, err)
  }
}

/** Runs every registered test whose name matches TEST_FILTER (regex), prints a summary. */
export async function runAll(suiteName) {
  process.on('uncaughtException', (e) => recordAsyncError('uncaught exception', e))
  process.on('unhandledRejection', (e) => recordAsyncError('unhandled rejection', e))

  const filter = process.env.TEST_FILTER ? new RegExp(process.env.TEST_FILTER) : null
  const selected = registry.filter((t) => !filter || filter.test(t.name))
  const failures = []
  let passed = 0
  const started = Date.now()
  console.log(`# suite ${suiteName}: ${selected.length} tests`)

  for (const t of selected) {
    const cleanups = []
    const ctx = {
      name: t.name,
      asyncErrors: [],
      notes: [],
      /** Registers a cleanup; they run in reverse order after the test. */
      defer: (fn) => cleanups.push(fn),
      /** Adds a line to the failure report of this test. */
      note: (s) => ctx.notes.push(s),
      /** Things that can dump their recent frames ({label, dump()}) for failure reports. */
      frameSources: [],
      frameDump: () => ctx.frameSources.map((src) => `  [${src.label}]\n${src.dump()}`).join('\n'),
    }
    current = ctx
    const t0 = Date.now()
    let error = null
    try {
      await withTimeout(Promise.resolve().then(() => t.fn(ctx)), t.timeout, `test "${t.name}"`)
    } catch (e) {
      error = e
    }
    for (const fn of cleanups.reverse()) {
      try {
        await withTimeout(Promise.resolve().then(fn), 5000, 'cleanup')
      } catch (e) {
        ctx.notes.push(`cleanup failed: ${e.message}`)
      }
    }
    // Give stray callbacks of this test a moment to surface before attributing blame.
    await new Promise((r) => setTimeout(r, 20))
    current = null
    if (!error && ctx.asyncErrors.length > 0) {
      error = new Error(`asynchronous error during test:\n${ctx.asyncErrors.join('\n')}`)
    }
    const ms = Date.now() - t0
    if (error && !error.frames && ctx.frameSources.length > 0) {
      try {
        error.frames = ctx.frameDump()
      } catch {}
    }
    if (error) {
      failures.push({ name: t.name, error, notes: ctx.notes })
      console.log(`not ok - ${t.name} (${ms} ms)`)
      console.log(indent(formatError(error, ctx.notes)))
    } else {
      passed += 1
      console.log(`ok - ${t.name} (${ms} ms)`)
    }
  }

  const secs = ((Date.now() - started) / 1000).toFixed(1)
  console.log('')
  console.log(`# suite ${suiteName} finished in ${secs} s`)
  if (failures.length > 0) {
    console.log(`# failed tests:`)
    for (const f of failures) console.log(`#   ${f.name}`)
  }
  console.log(`${passed} passed, ${failures.length} failed`)
  return failures.length === 0
}

function formatError(e, notes) {
  const lines = []
  lines.push(e && e.message ? e.message : String(e))
  if (e instanceof MismatchError) {
    lines.push(`expected: ${describeValue(e.expected)}`)
    lines.push(`seen:     ${describeValue(e.seen)}`)
  }
  if (e && e.frames) lines.push(`frames:\n${e.frames}`)
  if (e && e.stack && !(e instanceof MismatchError) && !e.frames) {
    const at = e.stack.split('\n').filter((l) => l.includes('/suites/')).slice(0, 2)
    lines.push(...at.map((l) => l.trim()))
  }
  for (const n of notes) lines.push(`note: ${n}`)
  return lines.join('\n')
}

function indent(s) {
  return s
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n')
}
