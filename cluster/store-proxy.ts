/**
 * One snapshot store shared by the worker threads of a process (`weir run --workers N`): the
 * main thread opens the store and serves it over a MessagePort per worker; a worker's
 * {@link StoreClient} forwards every call. So the embedded store, which belongs to one process,
 * works with workers, and every worker's writes go through the store that holds the job's lease.
 */
import type { MessagePort } from 'node:worker_threads'
import { WorkerPorts } from './worker-ports.ts'
import type { BeginSnapshot, ChunkFilter, CompleteSnapshot, JobLease, LeaseOptions, SnapshotInfo, SnapshotStore, StateChunk } from '../persistence/store.ts'
import * as errors from '../persistence/errors.ts'

type Call = { t: 'call'; id: number; method: string; args: unknown[] }
type Reply = { t: 'ok'; id: number; value: unknown } | { t: 'err'; id: number; error: SentError } | { t: 'lost'; lease: number; error: SentError }

interface SentError {
  name: string
  message: string
  stack?: string
  fields: Record<string, unknown>
}

/** Store methods a worker may call; the lease is handled apart. */
const FORWARDED = new Set(['open', 'nextSnapshotId', 'beginSnapshot', 'writeChunks', 'completeSnapshot', 'abortSnapshot', 'getSnapshot', 'listSnapshots', 'latestCompleted', 'verifySnapshot', 'readChunks', 'discardSnapshot'])

function sendable(err: unknown): SentError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err), fields: {} }
  const fields: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(err)) {
    try {
      structuredClone(v)
      fields[k] = v
    } catch {
      // a field that cannot cross threads (a function, a socket) is left behind
    }
  }
  return { name: err.name, message: err.message, ...(err.stack === undefined ? {} : { stack: err.stack }), fields }
}

/** The error as thrown in the main thread: Weir's store errors keep their class, so `instanceof` checks hold. */
function rebuilt(e: SentError): Error {
  const cls = (errors as Record<string, unknown>)[e.name]
  const err: Error = typeof cls === 'function' && cls.prototype instanceof Error ? (Object.create(cls.prototype as object) as Error) : new Error(e.message)
  Object.assign(err, e.fields)
  Object.defineProperty(err, 'message', { value: e.message, enumerable: false, writable: true, configurable: true })
  if (e.stack !== undefined) Object.defineProperty(err, 'stack', { value: e.stack, enumerable: false, writable: true, configurable: true })
  if (err.name !== e.name) Object.defineProperty(err, 'name', { value: e.name, enumerable: false, writable: true, configurable: true })
  return err
}

/** Serves `store` to workers, on the main thread. */
export class StoreServer {
  private readonly leases = new Map<number, { lease: JobLease; port: MessagePort }>()
  private nextLease = 1
  /** Leases taken for workers so far, and the last refusal (another runner holds the job). */
  leasesGranted = 0
  lastLeaseRefusal: Error | undefined
  private readonly ports = new WorkerPorts<Call>()

  constructor(private readonly store: SnapshotStore) {}

  /** A port for one worker (pass it in the worker's data and transfer list). */
  connect(): MessagePort {
    return this.ports.open((port, m) => void this.serve(port, m))
  }

  private async serve(port: MessagePort, m: Call): Promise<void> {
    try {
      let value: unknown
      if (m.method === 'acquireLease') {
        const lease = await this.store.acquireLease(m.args[0] as string, m.args[1] as LeaseOptions | undefined).catch((err: unknown) => {
          if (err instanceof errors.JobAlreadyRunningError) this.lastLeaseRefusal = err
          throw err
        })
        this.leasesGranted++
        const id = this.nextLease++
        this.leases.set(id, { lease, port })
        void lease.lost.then((error) => {
          if (this.leases.delete(id)) port.postMessage({ t: 'lost', lease: id, error: sendable(error) } satisfies Reply)
        })
        value = { id, job: lease.job, epoch: lease.epoch, owner: lease.owner, host: lease.host, pid: lease.pid, since: lease.since }
      } else if (m.method === 'releaseLease') {
        const held = this.leases.get(m.args[0] as number)
        this.leases.delete(m.args[0] as number)
        await held?.lease.release()
      } else if (m.method === 'followLease') {
        await this.store.followLease?.(m.args[0] as string, m.args[1] as number, m.args[2] as LeaseOptions | undefined)
      } else if (FORWARDED.has(m.method)) {
        value = await (this.store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m.method]!(...m.args)
      } else {
        throw new Error(`the store proxy has no method ${m.method}`)
      }
      port.postMessage({ t: 'ok', id: m.id, value } satisfies Reply)
    } catch (err) {
      port.postMessage({ t: 'err', id: m.id, error: sendable(err) } satisfies Reply)
    }
  }

  /**
   * A worker ended: the leases it held are released (the lease would otherwise go on being
   * renewed here for a coordinator that is gone, and no other worker could take over).
   */
  async disconnect(workerEnd: MessagePort): Promise<void> {
    const port = this.ports.take(workerEnd)
    if (port === undefined) return
    for (const [id, held] of this.leases) {
      if (held.port !== port) continue
      this.leases.delete(id)
      await held.lease.release().catch(() => {})
    }
    port.close()
  }

  /** Releases the leases still held and closes the ports (not the store). */
  async close(): Promise<void> {
    for (const held of this.leases.values()) await held.lease.release().catch(() => {})
    this.leases.clear()
    this.ports.closeAll()
  }
}

/** A worker's view of the main thread's store. */
export class StoreClient implements SnapshotStore {
  private nextId = 1
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private readonly lost = new Map<number, (e: errors.FencedError) => void>()

  constructor(
    private readonly port: MessagePort,
    readonly description: string,
  ) {
    port.on('message', (m: Reply) => {
      if (m.t === 'lost') {
        this.lost.get(m.lease)?.(rebuilt(m.error) as errors.FencedError)
        this.lost.delete(m.lease)
        return
      }
      const call = this.calls.get(m.id)
      this.calls.delete(m.id)
      if (m.t === 'ok') call?.resolve(m.value)
      else call?.reject(rebuilt(m.error))
    })
  }

  private call<T>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.port.postMessage({ t: 'call', id, method, args } satisfies Call)
    })
  }

  open(): Promise<void> {
    return this.call('open')
  }

  /** Closes this worker's end once the calls in flight (a lease release, say) are answered, or after 5 s; the main thread closes the store itself. */
  async close(): Promise<void> {
    const until = Date.now() + 5000
    while (this.calls.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5))
    for (const c of this.calls.values()) c.reject(new Error('the store connection of this worker closed'))
    this.calls.clear()
    this.port.close()
  }

  async acquireLease(job: string, options?: LeaseOptions): Promise<JobLease> {
    // A function cannot cross to the main thread, so a worker is not told of a wait.
    const { onWait: _onWait, ...sendable } = options ?? {}
    const l = await this.call<{ id: number; job: string; epoch: number; owner: string; host: string; pid: number; since: number }>('acquireLease', job, sendable)
    const lost = new Promise<errors.FencedError>((resolve) => this.lost.set(l.id, resolve))
    let released = false
    return {
      job: l.job,
      epoch: l.epoch,
      owner: l.owner,
      host: l.host,
      pid: l.pid,
      since: l.since,
      lost,
      release: async () => {
        if (released) return
        released = true
        this.lost.delete(l.id)
        await this.call('releaseLease', l.id)
      },
    }
  }

  followLease(job: string, epoch: number, options?: LeaseOptions): Promise<void> {
    return this.call('followLease', job, epoch, options)
  }

  nextSnapshotId(job: string): Promise<number> {
    return this.call('nextSnapshotId', job)
  }

  beginSnapshot(begin: BeginSnapshot): Promise<void> {
    return this.call('beginSnapshot', begin)
  }

  writeChunks(job: string, id: number, chunks: readonly StateChunk[]): Promise<number> {
    return this.call('writeChunks', job, id, chunks)
  }

  completeSnapshot(job: string, id: number, complete: CompleteSnapshot): Promise<SnapshotInfo> {
    return this.call('completeSnapshot', job, id, complete)
  }

  abortSnapshot(job: string, id: number, reason: string): Promise<void> {
    return this.call('abortSnapshot', job, id, reason)
  }

  getSnapshot(job: string, id: number): Promise<SnapshotInfo | undefined> {
    return this.call('getSnapshot', job, id)
  }

  listSnapshots(job: string): Promise<SnapshotInfo[]> {
    return this.call('listSnapshots', job)
  }

  latestCompleted(job: string): Promise<SnapshotInfo | undefined> {
    return this.call('latestCompleted', job)
  }

  verifySnapshot(job: string, id: number): Promise<SnapshotInfo> {
    return this.call('verifySnapshot', job, id)
  }

  readChunks(job: string, id: number, filter?: ChunkFilter): Promise<StateChunk[]> {
    return this.call('readChunks', job, id, filter)
  }

  discardSnapshot(job: string, id: number): Promise<void> {
    return this.call('discardSnapshot', job, id)
  }
}
