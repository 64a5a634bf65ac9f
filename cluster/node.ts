/**
 * A Weir node (docs/architecture.md section 21): one process of a job that runs on several. Every
 * node runs the job file it was started with, heartbeats over NATS, runs the instances the
 * coordinator places on it, and tries to take the job lease; the node holding the lease is the
 * coordinator (cluster/coordinator.ts). When the job finishes, every node ends.
 */
import { hostname } from 'node:os'
import type { Subscription } from '@nats-io/transport-node'
import type { Channel, ChannelAddress, Placement } from '../actors/runtime/channel.ts'
import { LocalExecutor } from '../actors/runtime/local-executor.ts'
import { describeThrown, isRetryable, JobAlreadyRunningError } from '../persistence/errors.ts'
import type { Logger } from '../actors/runtime/logger.ts'
import { decodeCommand, decodeHeartbeat, encodeMessage, jobSubjects, newer, type Command, type Heartbeat, type Report } from './control.ts'
import { Coordinator } from './coordinator.ts'
import type { Member, NodeOptions } from './node-options.ts'
import { checkClusterable, fingerprintDifference, graphFingerprint, withParallelism } from './plan.ts'
import { RemoteReceiver, RemoteSender } from './remote-channel.ts'
import type { Generation } from './channel-wire.ts'

/** How a node's part of the job ended. */
export interface NodeResult {
  status: 'finished' | 'canceled'
  /** True if this node was the coordinator at the end. */
  coordinator: boolean
}

/** Items a remote receiver grants its sender: more than in process, to cover the network's latency. */
const REMOTE_WINDOW = 32

interface Running {
  gen: Generation
  executor: LocalExecutor
  channels: (RemoteSender | RemoteReceiver)[]
  instances: string[]
  finished: boolean
}

export class WeirNode {
  readonly nodeId: string
  readonly slots: number
  readonly subjects: ReturnType<typeof jobSubjects>
  readonly fingerprint: ReturnType<typeof graphFingerprint>
  /** Every node heard from, by id (this one included). */
  readonly members = new Map<string, Member>()
  readonly done: Promise<NodeResult>
  /** Messages refused: undecodable, of an old epoch, or breaking a channel. */
  dropped = 0
  readonly log: Logger
  private resolveDone!: (r: NodeResult) => void
  private rejectDone!: (e: unknown) => void
  private running: Running | undefined
  /** The newest epoch seen on a command: older ones are fenced. */
  private epoch = 0
  private ran = false
  private leaving = false
  private ended = false
  private coordinator: Coordinator | undefined
  private readonly subs: Subscription[] = []
  private heartbeat: NodeJS.Timeout | undefined
  /** Timers running while NATS is unreachable: stop the instances, then give up. */
  private cutOff: NodeJS.Timeout[] = []
  private leaseTimer: NodeJS.Timeout | undefined
  /** Commands run one after another: a deploy awaits its restore before the next command. */
  private queue: Promise<void> = Promise.resolve()

  constructor(readonly o: NodeOptions) {
    checkClusterable(o.graph)
    if (o.store.followLease === undefined) {
      throw new Error(`a cluster needs a snapshot store every node shares, such as Postgres (--store postgres://...); ${o.store.description} is this process's own`)
    }
    this.nodeId = o.nodeId ?? `${hostname()}-${process.pid}`
    this.slots = o.slots ?? 1
    this.subjects = jobSubjects(o.subjectPrefix ?? 'weir', o.graph.name)
    this.fingerprint = graphFingerprint(o.graph)
    this.log = o.logger
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve
      this.rejectDone = reject
    })
    this.done.catch(() => {})
  }

  get heartbeatMs(): number {
    return this.o.heartbeatMs ?? 500
  }

  get nodeTimeoutMs(): number {
    return this.o.nodeTimeoutMs ?? 3000
  }

  /** Joins the job: heartbeats, follows commands, competes for the lease. Settles with {@link done}. */
  async start(): Promise<void> {
    const nc = this.o.nats
    this.subs.push(
      nc.subscribe(this.subjects.control, {
        callback: (err, msg) => {
          if (err !== null) return
          const cmd = decodeCommand(msg.data)
          if (cmd === undefined) {
            this.dropped++
            return
          }
          this.queue = this.queue.then(() => this.command(cmd)).catch((e: unknown) => this.log.error('command failed', { error: describeThrown(e) }))
        },
      }),
      nc.subscribe(this.subjects.heartbeats, {
        callback: (err, msg) => {
          if (err !== null) return
          const hb = decodeHeartbeat(msg.data)
          if (hb === undefined) {
            this.dropped++
            return
          }
          this.members.set(hb.node, { ...hb, seenAt: performance.now() })
          if (hb.coordinator && hb.hash !== this.fingerprint.hash && hb.node !== this.nodeId) {
            this.end(new Error(`node ${this.nodeId} runs another job graph than the coordinator ${hb.node}: ${fingerprintDifference(this.fingerprint.operators, hb.operators)}. Start every node of job ${this.o.graph.name} with the same job file`))
          }
        },
      }),
    )
    void this.watchConnection()
    this.beat()
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs)
    this.log.info('node joined', { node: this.nodeId, slots: this.slots, graph: this.fingerprint.hash })
    void this.tryLease()
  }

  /**
   * NATS unreachable: after the node timeout the others count this node dead and run the job
   * without it, so it stops its instances and its coordination (its lease is released, a node
   * that still reaches NATS takes over); once NATS is back it joins again. After `natsTimeoutMs`
   * it gives up with an error.
   */
  private async watchConnection(): Promise<void> {
    for await (const s of this.o.nats.status()) {
      if (this.ended) return
      if (s.type === 'disconnect' && this.cutOff.length === 0) {
        this.log.warn('lost the NATS connection; reconnecting', { node: this.nodeId })
        const giveUpMs = this.o.natsTimeoutMs ?? 60_000
        this.cutOff.push(
          setTimeout(() => {
            this.log.warn(`NATS unreachable for ${this.nodeTimeoutMs} ms: stopping this node's instances (the others run the job without it)`, { node: this.nodeId })
            this.queue = this.queue.then(async () => {
              await this.coordinator?.release() // stops coordinating, then lets another node take the lease
              await this.stopRunning()
            })
          }, this.nodeTimeoutMs),
          setTimeout(() => this.end(new Error(`NATS unreachable for ${giveUpMs} ms (${this.o.nats.getServer()}); this node gives up`)), giveUpMs),
        )
      } else if (s.type === 'reconnect') {
        this.log.info('NATS connection back', { node: this.nodeId })
        for (const t of this.cutOff) clearTimeout(t)
        this.cutOff = []
        // Commands, acks and channel items published meanwhile may be lost: recover the job
        // from its last checkpoint rather than wait for a checkpoint to time out.
        const r = this.running
        if (r !== undefined) this.attemptFailed(r.gen, new Error('the NATS connection was lost and came back: messages of this attempt may be lost'), true)
      }
    }
  }

  /** The heartbeat this node publishes now. */
  heartbeatNow(): Heartbeat {
    const r = this.running
    return {
      node: this.nodeId,
      host: hostname(),
      pid: process.pid,
      slots: this.slots,
      hash: this.fingerprint.hash,
      operators: this.fingerprint.operators,
      epoch: r?.gen.epoch ?? 0,
      attempt: r?.gen.attempt ?? 0,
      state: this.leaving ? 'leaving' : r === undefined ? 'idle' : r.finished ? 'finished' : 'running',
      coordinator: this.coordinator?.active === true,
      ran: this.ran,
      instances: r?.instances ?? [],
      recordsIn: r?.executor.recordsIn() ?? {},
      stats: r?.executor.instanceStats() ?? [],
      dropped: this.dropped,
      ...(this.coordinator?.lastCompleted === undefined ? {} : { lastCheckpoint: this.coordinator.lastCompleted }),
    }
  }

  private beat(): void {
    if (this.o.nats.isClosed()) return
    const hb = this.heartbeatNow()
    this.members.set(this.nodeId, { ...hb, seenAt: performance.now() })
    this.o.nats.publish(this.subjects.heartbeats, encodeMessage(hb))
  }

  /** Tries to become the coordinator now and then, until the job ends. */
  private async tryLease(): Promise<void> {
    this.leaseTimer = undefined
    if (this.ended || this.leaving) return
    // Cut off from NATS, it could not reach the nodes it would coordinate.
    if (this.cutOff.length === 0 && (this.coordinator === undefined || !this.coordinator.active)) {
      try {
        const lease = await this.o.store.acquireLease(this.o.graph.name, { expiryMs: this.o.leaseExpiryMs ?? 5000 })
        if (this.ended) {
          await lease.release()
          return
        }
        this.log.info('coordinating the job', { node: this.nodeId, epoch: lease.epoch })
        this.coordinator = new Coordinator(this, lease)
        void this.coordinator.run().catch((e: unknown) => this.log.error('coordinator stopped', { error: describeThrown(e) }))
      } catch (e) {
        if (!(e instanceof JobAlreadyRunningError)) this.log.warn('could not take the job lease', { error: describeThrown(e) })
      }
    }
    if (!this.ended) {
      this.leaseTimer = setTimeout(() => void this.tryLease(), this.heartbeatMs)
      this.leaseTimer.unref()
    }
  }

  /** Publishes a report to the coordinator. */
  report(r: Report): void {
    if (!this.o.nats.isClosed()) this.o.nats.publish(this.subjects.reports, encodeMessage(r))
  }

  private async command(cmd: Command): Promise<void> {
    if (this.ended) return
    if (cmd.epoch < this.epoch) {
      // A deposed coordinator (section 21): its commands are fenced.
      this.dropped++
      this.log.debug('dropped a command of an old epoch', { epoch: cmd.epoch, current: this.epoch, command: cmd.t })
      return
    }
    this.epoch = cmd.epoch
    const r = this.running
    const current = r !== undefined && r.gen.epoch === cmd.epoch && 'attempt' in cmd && r.gen.attempt === cmd.attempt
    switch (cmd.t) {
      case 'deploy':
        if (r !== undefined && !newer(cmd, r.gen)) return
        // At info level: it is how a zombie (a node frozen past its timeout) is seen to be fenced.
        if (r !== undefined) this.log.info('stopping an attempt a newer one replaces', { node: this.nodeId, epoch: r.gen.epoch, attempt: r.gen.attempt, newerEpoch: cmd.epoch, newer: cmd.attempt })
        await this.stopRunning()
        await this.deploy(cmd)
        return
      case 'trigger':
        if (current) r.executor.triggerCheckpoint(cmd.id)
        return
      case 'complete':
        if (current) await r.executor.checkpointCompleted(cmd.id)
        return
      case 'abort':
        if (current) r.executor.checkpointAborted(cmd.id)
        return
      case 'done':
        if (r !== undefined && !current) await this.stopRunning()
        else if (r !== undefined) {
          // The final checkpoint is complete: sinks flush and close, nothing is canceled.
          this.running = undefined
          for (const c of r.channels) c.close()
          await r.executor.close()
        }
        this.log.info('job finished', { node: this.nodeId })
        this.finish({ status: 'finished', coordinator: this.coordinator?.active === true })
        return
      case 'cancel':
        await this.stopRunning()
        this.log.info('job canceled', { node: this.nodeId })
        this.finish({ status: 'canceled', coordinator: this.coordinator?.active === true })
        return
      case 'fail':
        if (cmd.node !== undefined && cmd.node !== this.nodeId) return
        await this.stopRunning()
        this.end(new Error(cmd.reason))
        return
    }
  }

  /** Builds, restores and starts this node's instances of an attempt. */
  private async deploy(cmd: Extract<Command, { t: 'deploy' }>): Promise<void> {
    const gen = { epoch: cmd.epoch, attempt: cmd.attempt }
    const mine = (uid: string, i: number) => cmd.plan.assignments[uid]?.[i] === this.nodeId
    const instances = Object.entries(cmd.plan.assignments).flatMap(([uid, nodes]) => nodes.flatMap((n, i) => (n === this.nodeId ? [`${uid}[${i}]`] : [])))
    if (instances.length === 0) {
      this.report({ t: 'deployed', ...gen, node: this.nodeId })
      if (this.leaving) this.finish({ status: 'finished', coordinator: false })
      return
    }
    this.ran = true
    const channels: (RemoteSender | RemoteReceiver)[] = []
    let executor: LocalExecutor | undefined
    const events = {
      wake: () => executor?.wake(),
      broken: (error: Error) => this.attemptFailed(gen, error, true),
      dropped: () => this.dropped++,
    }
    const maxPayload = this.o.nats.info?.max_payload ?? 1024 * 1024
    const placement: Placement = {
      isLocal: mine,
      remote: (a: ChannelAddress): Channel => {
        const c = mine(a.from, a.fromIndex)
          ? new RemoteSender(this.o.nats, this.subjects.root, gen, a, events, maxPayload - 512)
          : new RemoteReceiver(this.o.nats, this.subjects.root, gen, a, events, REMOTE_WINDOW)
        channels.push(c)
        return c
      },
    }
    const graph = withParallelism(this.o.graph, cmd.plan.parallelism)
    try {
      // Snapshots are written under the coordinator's epoch: a zombie's writes are refused.
      if (this.coordinator?.active !== true || this.coordinator.epoch !== cmd.epoch) {
        await this.o.store.followLease!(this.o.graph.name, cmd.epoch, { expiryMs: this.o.leaseExpiryMs ?? 5000 })
      }
      executor = await LocalExecutor.create({
        graph,
        attempt: cmd.attempt,
        store: this.o.store,
        mode: this.o.checkpoints.mode,
        acks: {
          ack: (attempt, id, instance, bytes) => this.report({ t: 'ack', epoch: gen.epoch, attempt, id, instance, bytes }),
          decline: (attempt, id, instance, error) => this.report({ t: 'decline', epoch: gen.epoch, attempt, id, instance, reason: describeThrown(error) }),
        },
        logger: this.log,
        tuning: this.o.tuning,
        strictState: this.o.strictState === true,
        clock: this.o.clock,
        inspect: this.o.inspect,
        placement,
      })
      this.running = { gen, executor, channels, instances, finished: false }
      if (cmd.from !== null) await executor.restore(cmd.from)
      executor.start()
    } catch (e) {
      for (const c of channels) c.close()
      await executor?.cancel().catch(() => {})
      this.running = undefined
      this.report({ t: 'deployed', ...gen, node: this.nodeId, error: describeThrown(e) })
      this.report({ t: 'failed', ...gen, node: this.nodeId, reason: describeThrown(e), retryable: isRetryable(e) })
      return
    }
    this.log.info('running', { node: this.nodeId, epoch: gen.epoch, attempt: gen.attempt, instances: instances.join(' '), from: cmd.from ?? 'nothing' })
    this.report({ t: 'deployed', ...gen, node: this.nodeId })
    const running = this.running
    executor.done.then(
      async () => {
        if (this.running !== running) return
        running.finished = true
        // Items still in the client's buffer must reach the other nodes before the report.
        await this.o.nats.flush().catch(() => {})
        this.report({ t: 'finished', ...gen, node: this.nodeId })
      },
      (e: unknown) => this.attemptFailed(gen, e, isRetryable(e)),
    )
  }

  private attemptFailed(gen: Generation, error: unknown, retryable: boolean): void {
    const r = this.running
    if (r === undefined || r.gen.epoch !== gen.epoch || r.gen.attempt !== gen.attempt) return
    this.log.error('attempt failed on this node', { node: this.nodeId, attempt: gen.attempt, error: describeThrown(error) })
    this.report({ t: 'failed', ...gen, node: this.nodeId, reason: describeThrown(error), retryable })
  }

  private async stopRunning(): Promise<void> {
    const r = this.running
    if (r === undefined) return
    this.running = undefined
    for (const c of r.channels) c.close()
    await r.executor.cancel().catch((e: unknown) => this.log.warn('canceling the attempt failed', { error: describeThrown(e) }))
  }

  /**
   * Leaves the job (SIGTERM): the coordinator moves this node's instances to the others at a
   * checkpoint, then this node ends. A coordinator hands its lease over the same way.
   */
  async leave(): Promise<void> {
    if (this.ended || this.leaving) return
    this.leaving = true
    this.log.info('leaving the job', { node: this.nodeId })
    this.beat()
    if (this.coordinator?.active === true) {
      await this.coordinator.handOver()
      await this.stopRunning()
      this.finish({ status: 'finished', coordinator: false })
    } else if (this.running === undefined) {
      this.finish({ status: 'finished', coordinator: false })
    }
  }

  /** Ends this node: stops heartbeats, the coordinator and the instances. */
  private finish(result: NodeResult): void {
    if (this.ended) return
    this.ended = true
    void this.shutdown().then(() => this.resolveDone(result), (e: unknown) => this.rejectDone(e))
  }

  private end(error: unknown): void {
    if (this.ended) return
    this.ended = true
    this.log.error('node stopped', { node: this.nodeId, error: describeThrown(error) })
    void this.shutdown().finally(() => this.rejectDone(error))
  }

  /** Stops everything this node runs; the NATS connection and store stay open (the caller's). */
  async shutdown(): Promise<void> {
    this.ended = true
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat)
    if (this.leaseTimer !== undefined) clearTimeout(this.leaseTimer)
    for (const t of this.cutOff) clearTimeout(t)
    for (const s of this.subs) s.unsubscribe()
    await this.coordinator?.stop()
    await this.stopRunning()
  }

  /** Fails the whole job (called by the coordinator when it gives up). */
  failJob(error: unknown): void {
    this.end(error)
  }
}
