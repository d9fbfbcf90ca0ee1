// Headless Chromium driven over the Chrome DevTools Protocol: the browser's
// own WebSocket (--remote-debugging-port) and the `ws` package, no browser
// automation library. Every wait has a deadline.

import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import WebSocket from 'ws'

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']

/** Path of a Chromium binary (CHROMIUM overrides), or null. */
export function findChromium() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM
  for (const name of CANDIDATES) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null
    } catch {}
  }
  return null
}

function withDeadline(promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** A launched headless browser with one page attached. */
export class Browser {
  /** Starts Chromium and opens a blank page; `close()` ends both. */
  static async launch({ bin = findChromium(), timeout = 20000, width = 1280, height = 900 } = {}) {
    if (!bin) throw new Error('no Chromium found (install the Debian `chromium` package or set CHROMIUM)')
    const profile = mkdtempSync(path.join(tmpdir(), 'rt-inspector-chromium-'))
    const args = [
      '--headless=new',
      '--remote-debugging-port=0',
      `--user-data-dir=${profile}`,
      `--window-size=${width},${height}`,
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-extensions',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--metrics-recording-only',
      '--password-store=basic',
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      'about:blank',
    ]
    const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    const b = new Browser(proc, profile)
    const wsUrl = await withDeadline(
      new Promise((resolve, reject) => {
        let err = ''
        proc.stderr.on('data', (d) => {
          err += d
          const m = err.match(/DevTools listening on (ws:\/\/\S+)/)
          if (m) resolve(m[1])
        })
        proc.on('exit', (code) => reject(new Error(`chromium exited (${code}) before listening: ${err.slice(-500)}`)))
        proc.on('error', reject)
      }),
      timeout,
      'chromium to print its DevTools address'
    ).catch(async (e) => {
      await b.close()
      throw e
    })
    try {
      await b.attach(wsUrl, timeout)
      await b.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false })
    } catch (e) {
      await b.close()
      throw e
    }
    return b
  }

  constructor(proc, profile) {
    this.proc = proc
    this.profile = profile
    this.ws = null
    this.nextId = 0
    this.calls = new Map()
    this.sessionId = null
    this.consoleLines = []
  }

  async attach(wsUrl, timeout) {
    this.ws = new WebSocket(wsUrl, { perMessageDeflate: false })
    await withDeadline(new Promise((resolve, reject) => {
      this.ws.once('open', resolve)
      this.ws.once('error', reject)
    }), timeout, 'the DevTools WebSocket to open')
    this.ws.on('message', (data) => {
      const msg = JSON.parse(data.toString())
      if (msg.id !== undefined && this.calls.has(msg.id)) {
        const { resolve, reject } = this.calls.get(msg.id)
        this.calls.delete(msg.id)
        if (msg.error) reject(new Error(`CDP: ${msg.error.message}`))
        else resolve(msg.result)
      } else if (msg.method === 'Runtime.consoleAPICalled') {
        this.consoleLines.push(`${msg.params.type}: ${msg.params.args.map((a) => a.value ?? a.description).join(' ')}`)
      } else if (msg.method === 'Runtime.exceptionThrown') {
        this.consoleLines.push(`exception: ${msg.params.exceptionDetails.exception?.description ?? msg.params.exceptionDetails.text}`)
      }
    })
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' }, null)
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true }, null)
    this.sessionId = sessionId
    await this.send('Page.enable')
    await this.send('Runtime.enable')
  }

  /** One CDP command on the page's session (`session` null: the browser's). */
  send(method, params = {}, session = this.sessionId, timeout = 10000) {
    const id = ++this.nextId
    const msg = { id, method, params }
    if (session) msg.sessionId = session
    const reply = new Promise((resolve, reject) => this.calls.set(id, { resolve, reject }))
    this.ws.send(JSON.stringify(msg))
    return withDeadline(reply, timeout, method).finally(() => this.calls.delete(id))
  }

  /** Value of a JavaScript expression in the page (awaited if a promise). */
  async eval(expression, timeout = 10000) {
    const r = await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, this.sessionId, timeout)
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`)
    return r.result.value
  }

  /** Polls `expression` until it is truthy; returns its value. */
  async waitFor(expression, { timeout = 5000, what = expression } = {}) {
    const deadline = Date.now() + timeout
    let last
    for (;;) {
      try {
        last = await this.eval(expression, Math.max(1000, deadline - Date.now()))
        if (last) return last
      } catch (e) {
        last = e.message
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting in the page for ${what} (last: ${JSON.stringify(last)})`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  async navigate(url, timeout = 10000) {
    await this.send('Page.navigate', { url })
    await this.waitFor(`document.readyState === 'complete' && location.href === ${JSON.stringify(url)}`, { timeout, what: `${url} to load` })
  }

  /** A PNG of the page as it is. */
  async screenshot() {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png' }, this.sessionId, 15000)
    return Buffer.from(data, 'base64')
  }

  async close() {
    try {
      this.ws?.close()
    } catch {}
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r))
      this.proc.kill('SIGTERM')
      await withDeadline(exited, 5000, 'chromium to exit').catch(() => this.proc.kill('SIGKILL'))
    }
    rmSync(this.profile, { recursive: true, force: true, maxRetries: 3 })
  }
}
