/**
 * A message bus between the worker threads of one process (`weir run --workers N`), standing in
 * for NATS: the main thread routes each published message to the subscriptions whose subject
 * matches, over one MessagePort per worker. A node in a worker thread talks to it through
 * {@link BusConnection}, which offers the part of nats.js's connection the node uses, so a worker
 * runs the same node, coordinator and channels as a `weir node` process.
 *
 * Messages are delivered in the order they were published by each publisher, and never lost
 * while the process lives (no server to restart), so the channels' sequence checks never fire.
 */
import type { MessagePort } from 'node:worker_threads'
import type { Msg, NatsConnection, Status, Subscription } from '@nats-io/transport-node'
import { WorkerPorts } from './worker-ports.ts'

/** Messages from a worker to the bus. */
type ToBus =
  | { t: 'sub'; sid: number; subject: string }
  | { t: 'unsub'; sid: number }
  | { t: 'pub'; subject: string; data: Uint8Array; reply?: string }
  | { t: 'ping'; id: number }

/** Messages from the bus to a worker. */
type FromBus = { t: 'msg'; sid: number; subject: string; data: Uint8Array; reply: string | undefined } | { t: 'pong'; id: number }

/** True if `subject` matches `pattern` (`*` one token, `>` the rest), as NATS matches them. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true
  const p = pattern.split('.')
  const s = subject.split('.')
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false
  }
  return p.length === s.length
}

interface BusSubscription {
  port: MessagePort
  sid: number
  pattern: string
}

/** The router, on the main thread. */
export class LocalBus {
  /** Exact subjects, the common case, by subject. */
  private readonly exact = new Map<string, BusSubscription[]>()
  private readonly wildcards: BusSubscription[] = []
  /** Main-thread listeners, by exact subject. */
  private readonly taps = new Map<string, ((data: Uint8Array) => void)[]>()
  private readonly ports = new WorkerPorts<ToBus>()

  /** A port for one worker: pass it in the worker's data (and its transfer list). */
  connect(): MessagePort {
    return this.ports.open((port, m) => this.handle(port, m))
  }

  private handle(port: MessagePort, m: ToBus): void {
    switch (m.t) {
      case 'sub': {
        const sub = { port, sid: m.sid, pattern: m.subject }
        if (m.subject.includes('*') || m.subject.includes('>')) this.wildcards.push(sub)
        else this.exact.set(m.subject, [...(this.exact.get(m.subject) ?? []), sub])
        return
      }
      case 'unsub':
        this.remove((s) => s.port === port && s.sid === m.sid)
        return
      case 'pub':
        this.route(m.subject, m.data, m.reply)
        return
      case 'ping':
        port.postMessage({ t: 'pong', id: m.id } satisfies FromBus)
        return
    }
  }

  /** Calls `listener` on the main thread for every message published on `subject` (exact). */
  tap(subject: string, listener: (data: Uint8Array) => void): void {
    this.taps.set(subject, [...(this.taps.get(subject) ?? []), listener])
  }

  private route(subject: string, data: Uint8Array, reply: string | undefined): void {
    const taps = this.taps.get(subject)
    if (taps !== undefined) for (const listen of taps) listen(data)
    const exact = this.exact.get(subject)
    if (exact !== undefined) for (const s of exact) s.port.postMessage({ t: 'msg', sid: s.sid, subject, data, reply } satisfies FromBus)
    for (const s of this.wildcards) if (subjectMatches(s.pattern, subject)) s.port.postMessage({ t: 'msg', sid: s.sid, subject, data, reply } satisfies FromBus)
  }

  /** Publishes from the main thread (a cancel request, say). */
  publish(subject: string, data: Uint8Array = new Uint8Array(0)): void {
    this.route(subject, data, undefined)
  }

  /** Drops the subscriptions `drop` picks. */
  private remove(drop: (s: BusSubscription) => boolean): void {
    for (const [subject, subs] of this.exact) {
      const left = subs.filter((s) => !drop(s))
      if (left.length === 0) this.exact.delete(subject)
      else if (left.length !== subs.length) this.exact.set(subject, left)
    }
    for (let i = 0; i < this.wildcards.length; i++) if (drop(this.wildcards[i]!)) this.wildcards.splice(i--, 1)
  }

  /** Forgets the subscriptions of a worker that ended (given the port its end was made from). */
  disconnect(workerEnd: MessagePort): void {
    const port = this.ports.take(workerEnd)
    if (port === undefined) return
    port.close()
    this.remove((s) => s.port === port)
  }

  close(): void {
    this.ports.closeAll()
  }
}

type Callback = (err: Error | null, msg: Msg) => void

/** Largest message the bus takes: the channels split record batches above it, as for NATS. */
const MAX_PAYLOAD = 8 * 1024 * 1024

/**
 * A worker's end of the bus, shaped like the part of a nats.js connection a node uses (publish,
 * subscribe, request, flush, status, close). Everything else is absent.
 */
export class BusConnection {
  private nextSid = 1
  private nextPing = 1
  private readonly callbacks = new Map<number, Callback>()
  private readonly pings = new Map<number, () => void>()
  private closedFlag = false
  private readonly closedPromise: Promise<void | Error>
  private resolveClosed!: (v: void | Error) => void
  readonly info = { max_payload: MAX_PAYLOAD }

  constructor(private readonly port: MessagePort) {
    this.closedPromise = new Promise((r) => (this.resolveClosed = r))
    port.on('message', (m: FromBus) => {
      if (m.t === 'pong') {
        this.pings.get(m.id)?.()
        this.pings.delete(m.id)
        return
      }
      const cb = this.callbacks.get(m.sid)
      if (cb === undefined) return
      const data = m.data
      const reply = m.reply
      const msg = {
        subject: m.subject,
        data,
        reply,
        respond: (d: Uint8Array) => {
          if (reply === undefined) return false
          this.publish(reply, d)
          return true
        },
      } as unknown as Msg
      cb(null, msg)
    })
  }

  /** This connection as the nats.js type the node takes. */
  asNats(): NatsConnection {
    return this as unknown as NatsConnection
  }

  private send(m: ToBus): void {
    if (!this.closedFlag) this.port.postMessage(m)
  }

  publish(subject: string, data: Uint8Array = new Uint8Array(0), opts?: { reply?: string }): void {
    if (this.closedFlag) throw new Error('the in-process bus connection is closed')
    this.send(opts?.reply === undefined ? { t: 'pub', subject, data } : { t: 'pub', subject, data, reply: opts.reply })
  }

  subscribe(subject: string, opts: { callback: Callback }): Subscription {
    const sid = this.nextSid++
    this.callbacks.set(sid, opts.callback)
    this.send({ t: 'sub', sid, subject })
    return {
      unsubscribe: () => {
        if (!this.callbacks.delete(sid)) return
        this.send({ t: 'unsub', sid })
      },
    } as unknown as Subscription
  }

  async request(subject: string, data: Uint8Array, opts: { timeout: number }): Promise<Msg> {
    const inbox = `_INBOX.${process.pid}.${this.nextSid}`
    return await new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unsubscribe()
        reject(new Error(`no answer on ${subject} within ${opts.timeout} ms`))
      }, opts.timeout)
      const sub = this.subscribe(inbox, {
        callback: (_e, m) => {
          clearTimeout(timer)
          sub.unsubscribe()
          resolve(m)
        },
      })
      this.publish(subject, data, { reply: inbox })
    })
  }

  /** Resolves once the bus has routed everything published before. */
  async flush(): Promise<void> {
    if (this.closedFlag) return
    const id = this.nextPing++
    await new Promise<void>((r) => {
      this.pings.set(id, r)
      this.send({ t: 'ping', id })
    })
  }

  isClosed(): boolean {
    return this.closedFlag
  }

  getServer(): string {
    return 'in-process bus'
  }

  /** The bus never disconnects: the status stream yields nothing and ends when the connection closes. */
  status(): AsyncIterable<Status> {
    const closed = this.closedPromise
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<Status>> => {
          await closed
          return { done: true, value: undefined }
        },
      }),
    }
  }

  closed(): Promise<void | Error> {
    return this.closedPromise
  }

  async drain(): Promise<void> {
    await this.flush()
    await this.close()
  }

  async close(): Promise<void> {
    if (this.closedFlag) return
    this.closedFlag = true
    for (const r of this.pings.values()) r()
    this.pings.clear()
    this.callbacks.clear()
    this.port.close()
    this.resolveClosed()
  }
}
