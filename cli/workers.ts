/**
 * `weir run <job.ts> --workers N`: the job as N cluster nodes in worker threads of this process,
 * so it uses N cores without a NATS server. The main thread routes the nodes' messages (an
 * in-process bus in place of NATS) and serves the one snapshot store they share; each worker
 * runs a node exactly as `weir node` does: the nodes elect a coordinator through the store's
 * lease, keyed operators run at N instances, and a worker that dies is recovered from as a dead
 * node is.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { Worker } from 'node:worker_threads'
import { decodeHeartbeat, encodeMessage, jobSubjects } from '../cluster/control.ts'
import { LocalBus } from '../cluster/local-bus.ts'
import { checkClusterable } from '../cluster/plan.ts'
import { StoreServer } from '../cluster/store-proxy.ts'
import type { SnapshotStore } from '../persistence/store.ts'
import type { ResolvedCheckpointOptions } from '../supervisor/checkpoint-options.ts'
import type { Logger, LogLevel } from '../actors/runtime/logger.ts'
import { loadJob, signalExitCode, UsageError } from './common.ts'
import type { WorkerData, WorkerResult } from './worker.ts'

export interface WorkersOptions {
  workers: number
  store: SnapshotStore
  checkpoints: ResolvedCheckpointOptions
  restore: 'latest' | 'none' | number
  level: LogLevel
  logger: Logger
}

/** Heartbeats between workers: cheap in process, so often, for a quick recovery. */
const HEARTBEAT_MS = 200
/** A worker not heard from for this long is dead to the others. */
const NODE_TIMEOUT_MS = 2000
/** A worker silent for this long is ended by the main thread (after the others gave up on it). */
const WORKER_TIMEOUT_MS = 3000
/** How long the workers try to take a lease another runner holds before the run fails. */
const LEASE_WAIT_MS = 15_000
/** Time a worker has to load the job and send its first heartbeat. */
const STARTUP_MS = 60_000

/** bin/weir-worker.js, beside the sources (`cli/`) or the build (`dist/cli/`). */
function workerEntry(): URL {
  for (const up of ['../bin/weir-worker.js', '../../bin/weir-worker.js']) {
    const url = new URL(up, import.meta.url)
    if (existsSync(url)) return url
  }
  throw new Error('bin/weir-worker.js is missing from this installation of weir')
}

/** Runs the job on `workers` worker threads; resolves with the exit code. */
export async function runWorkers(file: string, o: WorkersOptions): Promise<number> {
  const graph = (await loadJob(file)).graph()
  try {
    checkClusterable(graph)
  } catch (err) {
    throw new UsageError(`--workers: ${(err as Error).message}`)
  }
  const log = o.logger.child(graph.name)
  await o.store.open()
  // Another runner of the job (a `weir run` or another --workers process on the same store): say
  // so now. The workers would otherwise wait for a lease that never comes.
  try {
    await (await o.store.acquireLease(graph.name)).release()
  } catch (err) {
    await o.store.close()
    throw err
  }
  const bus = new LocalBus()
  const server = new StoreServer(o.store)
  const entry = workerEntry()
  const results = new Map<string, WorkerResult>()
  const exits: Promise<void>[] = []
  const threads = new Map<string, Worker>()
  // The main thread renews the leases the workers hold, so a worker stuck in user code that
  // never returns would keep the job's lease for ever: a worker silent past the node timeout is
  // ended, like a process killed, and the others recover the job without it.
  const subjects = jobSubjects('weir', graph.name)
  const seen = new Map<string, number>()
  // Until a worker runs instances, the coordinator waits for all of them: one that ends before
  // then fails the run (the others would wait for it for ever).
  let deployed = false
  let startFailure: string | undefined
  bus.tap(subjects.heartbeats, (data) => {
    const hb = decodeHeartbeat(data)
    if (hb === undefined) return
    seen.set(hb.node, performance.now())
    if (hb.ran) deployed = true
  })
  const started = performance.now()
  let refused: Error | undefined
  const watch = setInterval(() => {
    const now = performance.now()
    // Another runner took the job between the check above and the workers' first try.
    if (server.leasesGranted === 0 && server.lastLeaseRefusal !== undefined && now - started > LEASE_WAIT_MS && refused === undefined) {
      refused = server.lastLeaseRefusal
      log.error('the workers cannot take the job', { error: refused.message })
      for (const worker of threads.values()) void worker.terminate()
    }
    for (const [id, worker] of threads) {
      if (results.has(id)) continue // its node ended: it is closing
      const last = seen.get(id)
      const silentMs = now - (last ?? started)
      if (silentMs < (last === undefined ? STARTUP_MS : WORKER_TIMEOUT_MS)) continue
      threads.delete(id)
      log.error(`worker ${id} stopped answering for ${Math.round(silentMs)} ms (user code that never returns?); ending its thread`)
      void worker.terminate()
    }
  }, 250)
  log.info('starting workers', { workers: o.workers, store: o.store.description })
  for (let i = 1; i <= o.workers; i++) {
    const nodeId = `w${i}`
    const busPort = bus.connect()
    const storePort = server.connect()
    const data: WorkerData = {
      file: resolve(file),
      nodeId,
      workers: o.workers,
      checkpoints: o.checkpoints,
      restore: o.restore,
      level: o.level,
      heartbeatMs: HEARTBEAT_MS,
      nodeTimeoutMs: NODE_TIMEOUT_MS,
      busPort,
      storePort,
      storeDescription: o.store.description,
    }
    const worker = new Worker(entry, { workerData: data, transferList: [busPort, storePort] })
    threads.set(nodeId, worker)
    worker.on('message', (m: WorkerResult) => results.set(nodeId, m))
    exits.push(
      new Promise<void>((done) => {
        worker.on('error', (err) => {
          results.set(nodeId, { t: 'failed', error: err.message })
          log.error(`worker ${nodeId} stopped; the others go on with its part of the job`, { error: err.message })
        })
        worker.on('exit', (code) => {
          threads.delete(nodeId)
          bus.disconnect(busPort)
          if (!results.has(nodeId)) {
            results.set(nodeId, { t: 'failed', error: `the worker thread exited with code ${code}` })
            if (deployed) log.error(`worker ${nodeId} exited with code ${code}; the others go on with its part of the job`)
          }
          const result = results.get(nodeId)!
          if (!deployed && result.t === 'failed' && startFailure === undefined) {
            startFailure = `worker ${nodeId} ended before the job started: ${result.error}`
            for (const other of threads.values()) void other.terminate()
          }
          void server.disconnect(storePort).then(done, done)
        })
      }),
    )
  }
  let signaled = 0
  let signal: NodeJS.Signals | undefined
  const stop = (sig: NodeJS.Signals) => {
    signal = sig
    if (++signaled > 1) process.exit(signalExitCode(sig))
    log.warn(`${sig}: canceling the job (send it again to exit at once)`)
    bus.publish(subjects.cancel, encodeMessage({}))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  try {
    await Promise.all(exits)
  } finally {
    clearInterval(watch)
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    await server.close()
    bus.close()
    await o.store.close()
  }
  if (refused !== undefined) throw refused
  if (startFailure !== undefined) {
    log.error('job failed', { error: startFailure })
    return 1
  }
  const failed = [...results].filter(([, r]) => r.t === 'failed')
  const done = [...results.values()].find((r) => r.t === 'done')
  // Every worker has a result by now: its own, or a failure recorded when its thread exited.
  if (done === undefined) {
    for (const [id, r] of failed) log.error(`worker ${id} failed`, { error: r.t === 'failed' ? r.error : '' })
    log.error('job failed', { workers: o.workers })
    return 1
  }
  for (const [id, r] of failed) log.warn(`worker ${id} failed; the job ended on the others`, { error: r.t === 'failed' ? r.error : '' })
  log.info(`job ${done.status}`, { workers: o.workers })
  // As plain `weir run`: canceled by a signal exits 130 (SIGINT) or 143 (SIGTERM).
  return done.status === 'canceled' && signal !== undefined ? signalExitCode(signal) : 0
}
