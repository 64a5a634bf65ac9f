/**
 * The watchdog: notices a slice of processing that does not end (a user function that never
 * returns) and says so on stderr, naming the operator, the key and how long it has been stuck.
 *
 * The stuck thread cannot report anything itself, so the watchdog is a worker thread. The
 * executor marks the start and end of each slice in a SharedArrayBuffer (two integer writes per
 * slice). The worker reads it; when one slice has run too long it asks the main thread what it
 * is doing through an inspector session: inspector messages are handled by V8 interrupts, which
 * run even while JavaScript loops. The same way, it takes away the process's SIGINT/SIGTERM
 * listeners while the thread is stuck (they cannot run), so a signal ends the process by its
 * default action; they are put back when the slice ends.
 */
import { Worker } from 'node:worker_threads'

/** Where the worker finds the main thread's watchdogs, by id: a global, so `Runtime.evaluate` can reach it. */
const REGISTRY = Symbol.for('weir.watchdogs')
type Registry = Map<number, Watchdog>
const registry = ((globalThis as Record<symbol, unknown>)[REGISTRY] ??= new Map()) as Registry
let nextId = 1

/** Signals whose listeners are taken away while the main thread is stuck. */
const SIGNALS = ['SIGINT', 'SIGTERM'] as const

/** Options of {@link Watchdog.start}. */
export interface WatchdogOptions {
  /** Report a slice stuck this long, and again every as long, in ms. */
  intervalMs: number
  /** Prefix of the report line, e.g. the job's name. */
  scope: string
}

// The worker, as CommonJS source: it must not depend on the TypeScript loader of the main thread.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads')
const fs = require('node:fs')
const { id, interval, release, poll, scope } = workerData
const beat = new Int32Array(workerData.beat)
// Connected only while the main thread is stuck: a process must not exit with a session open
// (it would wait for the session to disconnect).
let session
const connect = () => {
  if (session !== undefined) return session
  try {
    session = new (require('node:inspector').Session)()
    session.connectToMainThread()
  } catch {
    session = null
  }
  return session
}
const disconnect = () => {
  if (session) session.disconnect()
  session = undefined
}
const call = (action, done) => {
  if (!connect()) return done(undefined)
  const expression = 'globalThis[Symbol.for("weir.watchdogs")]?.get(' + id + ')?.fromWorker(' + JSON.stringify(action) + ')'
  session.post('Runtime.evaluate', { expression, returnByValue: true }, (err, res) => done(err ? undefined : res?.result?.value))
}
let slice = -1
let since = 0
let released = false
let reported = 0
setInterval(() => {
  const now = Date.now()
  if (Atomics.load(beat, 1) === 0 || Atomics.load(beat, 0) !== slice) {
    slice = Atomics.load(beat, 0)
    since = now
    released = false
    reported = 0
    disconnect()
    return
  }
  const stuck = now - since
  if (!released && stuck >= release) {
    released = true
    call('release', () => {})
  }
  if (stuck >= (reported + 1) * interval) {
    reported = Math.floor(stuck / interval)
    call('describe', (what) => {
      const line = new Date().toISOString() + ' WARN  [' + scope + '] watchdog: stuck for ' + (stuck / 1000).toFixed(1) + ' s in ' +
        (typeof what === 'string' ? what : 'an unknown operator') +
        ' (a function that does not return blocks the whole job; SIGINT or SIGTERM now ends the process at once)\\n'
      try { fs.writeSync(2, line) } catch {}
    })
  }
}, poll)
`

/** A watchdog for one job; the executor reports slices with {@link enter} and {@link leave}. */
export class Watchdog {
  /** [0] slices started, [1] 1 while a slice runs. */
  private readonly beat = new Int32Array(new SharedArrayBuffer(8))
  private readonly id = nextId++
  private worker: Worker | undefined
  private removed: [string, ((...args: unknown[]) => void)[]][] | undefined
  /** What the main thread is doing, in words; set by the executor. */
  describe: () => string = () => 'an unknown operator'

  private constructor() {}

  /** Starts the worker thread. It does not keep the process alive. */
  static start(options: WatchdogOptions): Watchdog {
    const w = new Watchdog()
    registry.set(w.id, w)
    const interval = Math.max(1, options.intervalMs)
    w.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { beat: w.beat.buffer, id: w.id, interval, release: Math.min(1000, interval), poll: Math.min(250, Math.max(10, interval / 4)), scope: options.scope },
      stdout: false,
      stderr: false,
    })
    w.worker.unref()
    // A watchdog that cannot start must not take the job down with it.
    w.worker.on('error', () => {})
    return w
  }

  /** A slice of processing starts. */
  enter(): void {
    this.beat[0]!++
    Atomics.store(this.beat, 1, 1)
  }

  /** The slice ended: signal listeners taken away while it was stuck come back. */
  leave(): void {
    Atomics.store(this.beat, 1, 0)
    if (this.removed !== undefined) this.restoreListeners()
  }

  /** Called by the worker through the inspector, on the main thread, while it is stuck. */
  fromWorker(action: string): string | undefined {
    if (action === 'describe') {
      try {
        return this.describe()
      } catch {
        return undefined
      }
    }
    if (action === 'release' && this.removed === undefined) {
      this.removed = SIGNALS.map((s) => [s, process.listeners(s) as ((...args: unknown[]) => void)[]])
      for (const s of SIGNALS) process.removeAllListeners(s)
    }
    return undefined
  }

  private restoreListeners(): void {
    const removed = this.removed!
    this.removed = undefined
    for (const [s, listeners] of removed) for (const l of listeners) process.on(s, l)
  }

  /** Stops the worker. */
  async stop(): Promise<void> {
    registry.delete(this.id)
    if (this.removed !== undefined) this.restoreListeners()
    const w = this.worker
    this.worker = undefined
    if (w !== undefined) await w.terminate()
  }
}
