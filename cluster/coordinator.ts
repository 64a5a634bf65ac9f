/**
 * The coordinator of a cluster job (docs/architecture.md section 21), run by the node that holds
 * the job lease: it places instances on the live nodes' slots, triggers checkpoints and collects
 * acks, and runs recovery. A node that stops heartbeating, or an attempt that fails anywhere,
 * makes it restore the job from the newest completed checkpoint on the nodes left; a node that
 * joins makes it take a checkpoint and restore onto all of them (rescale). Its lease's epoch is
 * on every command, and the store refuses its writes once another node took the lease.
 */
import type { Subscription } from '@nats-io/transport-node'
import { describeThrown } from '../persistence/errors.ts'
import type { Logger } from '../actors/runtime/logger.ts'
import type { JobLease, SnapshotInfo } from '../persistence/store.ts'
import { CheckpointCoordinator } from '../supervisor/checkpoint-coordinator.ts'
import { newestVerifiedSnapshot, snapshotLayout } from '../supervisor/restore-point.ts'
import { decodeReport, encodeMessage, type Command, type Heartbeat, type jobSubjects, type Report } from './control.ts'
import type { Member, NodeOptions } from './node-options.ts'
import { planAttempt, withParallelism, type ExecutionPlan, type graphFingerprint } from './plan.ts'

/** How long nodes have to build and restore their instances before the attempt is given up. */
const DEPLOY_TIMEOUT_MS = 60_000
/** Pause before restarting after a failure, so a failing node does not spin the job. */
const RESTART_DELAY_MS = 200
/** What a coordinator reads of the node that runs it (a `WeirNode`). */
export interface CoordinatorHost {
  readonly o: NodeOptions
  readonly nodeId: string
  readonly heartbeatMs: number
  readonly nodeTimeoutMs: number
  readonly subjects: ReturnType<typeof jobSubjects>
  readonly fingerprint: ReturnType<typeof graphFingerprint>
  /** Every node heard from, by id (the host included). */
  readonly members: Map<string, Member>
  /** Messages refused so far. */
  dropped: number
  readonly log: Logger
  heartbeatNow(): Heartbeat
}

/** Tries of the final checkpoint. */
const FINAL_TRIES = 3

interface Attempt {
  attempt: number
  plan: ExecutionPlan
  nodes: Set<string>
  deployed: Set<string>
  finished: Set<string>
  checkpoints: CheckpointCoordinator
  deployTimer: NodeJS.Timeout | undefined
  finalizing: boolean
}

export class Coordinator {
  /** The newest completed checkpoint id. */
  lastCompleted: number | undefined
  private last: SnapshotInfo | undefined
  private current: Attempt | undefined
  private attemptNo = 0
  private failuresInARow = 0
  private restarting = false
  private rescaling = false
  private stopped = false
  private lost = false
  private sub: Subscription | undefined
  private requests: Subscription[] = []
  private watch: NodeJS.Timeout | undefined
  readonly epoch: number

  constructor(
    private readonly node: CoordinatorHost,
    private readonly lease: JobLease,
  ) {
    this.epoch = lease.epoch
    void lease.lost.then((e) => {
      this.lost = true
      if (this.stopped) return
      node.log.warn('lost the job lease: no longer coordinating', { node: node.nodeId, error: e.message })
      void this.stop()
    })
  }

  /** True while this node coordinates the job. */
  get active(): boolean {
    return !this.stopped && !this.lost
  }

  private get o() {
    return this.node.o
  }

  async run(): Promise<void> {
    const { nats, graph, store } = this.o
    const subjects = this.node.subjects
    this.sub = nats.subscribe(subjects.reports, {
      callback: (err, msg) => {
        if (err !== null) return
        const r = decodeReport(msg.data)
        if (r === undefined) {
          this.node.dropped++
          return
        }
        this.onReport(r)
      },
    })
    this.requests.push(
      nats.subscribe(subjects.status, {
        callback: (err, msg) => {
          if (err === null) msg.respond(encodeMessage(this.status()))
        },
      }),
      nats.subscribe(subjects.cancel, {
        callback: (err, msg) => {
          if (err !== null) return
          msg.respond(encodeMessage({ ok: true }))
          void this.cancelJob()
        },
      }),
    )
    // Pending snapshots of an earlier coordinator can never complete.
    for (const s of await store.listSnapshots(graph.name)) {
      if (s.status === 'pending') await store.abortSnapshot(graph.name, s.id, 'left pending by an earlier coordinator')
    }
    // Hear every live node before placing anything.
    await sleep(this.node.heartbeatMs * 2)
    // A coordinator taking over from another resumes on the nodes left; the first one waits for
    // as many nodes as asked for, then starts as asked. (Waiting on a takeover would stall a job
    // whose coordinator died with nothing to replace it.)
    const resumed = [...this.node.members.values()].some((m) => m.ran && m.node !== this.node.nodeId) || this.node.heartbeatNow().ran
    const minNodes = resumed ? 1 : (this.o.minNodes ?? 1)
    while (!this.stopped && this.live().length < minNodes) {
      this.node.log.info('waiting for nodes', { live: this.live().length, want: minNodes })
      await sleep(this.node.heartbeatMs)
    }
    if (this.stopped) return
    const restore = resumed ? 'latest' : (this.o.restore ?? 'latest')
    let from: SnapshotInfo | undefined
    if (restore === 'latest') from = await newestVerifiedSnapshot(store, graph, this.node.log)
    else if (typeof restore === 'number') {
      from = await store.verifySnapshot(graph.name, restore)
    }
    this.last = from
    this.lastCompleted = from?.id
    this.attemptNo = Math.max(from?.attempt ?? 0, 0)
    this.watch = setInterval(() => this.watchMembers(), this.node.heartbeatMs)
    this.deploy()
  }

  /**
   * Nodes heard from within `withinMs` (the node timeout), not leaving, running this job graph.
   * A deploy asks for nodes heard from within two heartbeats: a node that died just before a
   * takeover is still within the timeout, and placing instances on it would cost a recovery.
   */
  private live(withinMs = this.node.nodeTimeoutMs): Member[] {
    const now = performance.now()
    return [...this.node.members.values()].filter((m) => now - m.seenAt < withinMs && m.state !== 'leaving' && m.hash === this.node.fingerprint.hash)
  }

  private command(c: Command): void {
    if (this.active) this.o.nats.publish(this.node.subjects.control, encodeMessage(c))
  }

  /** Places a new attempt on the live nodes and tells them to run it from the last checkpoint. */
  private deploy(): void {
    this.restarting = false
    if (!this.active) return
    const live = this.live(Math.min(this.node.nodeTimeoutMs, 2 * this.node.heartbeatMs))
    if (live.length === 0) {
      this.node.log.warn('no live node to run the job; waiting')
      setTimeout(() => this.deploy(), this.node.heartbeatMs).unref()
      return
    }
    const plan = planAttempt(this.o.graph, live.map((m) => ({ node: m.node, slots: m.slots })))
    const attempt = ++this.attemptNo
    const graph = withParallelism(this.o.graph, plan.parallelism)
    const instances = graph.operators.flatMap((o) => Array.from({ length: o.parallelism }, (_, i) => `${o.uid}[${i}]`))
    const checkpoints = new CheckpointCoordinator({
      job: graph.name,
      attempt,
      store: this.o.store,
      options: this.o.checkpoints,
      layout: snapshotLayout(graph),
      instances,
      logger: this.node.log,
      onFailure: (e) => this.restart(`checkpoint failure: ${describeThrown(e)}`),
      onCompleted: (info) => {
        if (this.last === undefined || info.id > this.last.id) {
          this.last = info
          this.lastCompleted = info.id
        }
        this.failuresInARow = 0
      },
    })
    const nodes = new Set(Object.values(plan.assignments).flat())
    const a: Attempt = { attempt, plan, nodes, deployed: new Set(), finished: new Set(), checkpoints, deployTimer: undefined, finalizing: false }
    a.deployTimer = setTimeout(() => {
      const missing = [...nodes].filter((n) => !a.deployed.has(n))
      this.restart(`nodes ${missing.join(', ')} did not start attempt ${attempt} within ${DEPLOY_TIMEOUT_MS} ms`)
    }, DEPLOY_TIMEOUT_MS)
    this.current = a
    this.node.log.info('deploying', { epoch: this.epoch, attempt, from: this.last?.id ?? 'nothing', nodes: [...nodes].join(' '), parallelism: JSON.stringify(plan.parallelism) })
    this.command({ t: 'deploy', epoch: this.epoch, attempt, from: this.last?.id ?? null, plan })
  }

  private onReport(r: Report): void {
    const a = this.current
    if (!this.active || a === undefined || r.epoch !== this.epoch || r.attempt !== a.attempt) return
    switch (r.t) {
      case 'deployed':
        if (r.error !== undefined) return
        a.deployed.add(r.node)
        if (a.deployed.size === a.nodes.size) {
          clearTimeout(a.deployTimer)
          a.checkpoints.start({
            triggerCheckpoint: (id) => this.command({ t: 'trigger', epoch: this.epoch, attempt: a.attempt, id }),
            checkpointCompleted: async (id) => this.command({ t: 'complete', epoch: this.epoch, attempt: a.attempt, id }),
            checkpointAborted: (id) => this.command({ t: 'abort', epoch: this.epoch, attempt: a.attempt, id }),
          })
        }
        return
      case 'ack':
        a.checkpoints.ack(r.attempt, r.id, r.instance, r.bytes)
        return
      case 'decline':
        a.checkpoints.decline(r.attempt, r.id, r.instance, new Error(r.reason))
        return
      case 'finished':
        a.finished.add(r.node)
        if (a.finished.size === a.nodes.size && !a.finalizing) void this.finalize(a)
        return
      case 'failed':
        if (!r.retryable) {
          void this.failJob(`attempt ${a.attempt} failed on node ${r.node}: ${r.reason}`)
          return
        }
        this.restart(`attempt ${a.attempt} failed on node ${r.node}: ${r.reason}`)
        return
    }
  }

  /** Every instance finished: the final checkpoint holds the final state, then every node ends. */
  private async finalize(a: Attempt): Promise<void> {
    a.finalizing = true
    a.checkpoints.pause()
    for (let tries = 1; tries <= FINAL_TRIES; tries++) {
      const info = await a.checkpoints.trigger()
      if (this.current !== a || !this.active) return
      if (info !== undefined) {
        this.node.log.info('final checkpoint completed', { checkpoint: info.id })
        await a.checkpoints.stop()
        this.command({ t: 'done', epoch: this.epoch, attempt: a.attempt })
        await this.release()
        return
      }
      this.node.log.warn('final checkpoint failed; trying again', { try: tries })
    }
    this.restart('the final checkpoint failed 3 times')
  }

  /** Restores the job from the newest completed checkpoint on the live nodes. */
  private restart(reason: string): void {
    if (!this.active || this.restarting) return
    this.restarting = true
    this.rescaling = false
    const a = this.current
    this.node.log.warn('recovering the job', { reason, attempt: a?.attempt, from: this.last?.id ?? 'nothing' })
    if (++this.failuresInARow > (this.o.maxRestarts ?? 20)) {
      void this.failJob(`gave up after ${this.failuresInARow - 1} restarts in a row: ${reason}`)
      return
    }
    void this.stopAttempt().then(() => setTimeout(() => this.deploy(), RESTART_DELAY_MS).unref())
  }

  private async stopAttempt(): Promise<void> {
    const a = this.current
    this.current = undefined
    if (a === undefined) return
    clearTimeout(a.deployTimer)
    await a.checkpoints.stop()
  }

  /** Notices dead nodes (recovery) and new ones (rescale at the next checkpoint). */
  private watchMembers(): void {
    const a = this.current
    if (!this.active || a === undefined || this.restarting) return
    const live = new Set(this.live().map((m) => m.node))
    const gone = [...a.nodes].filter((n) => !live.has(n))
    if (gone.length > 0) {
      this.restart(`node ${gone.join(', ')} stopped answering (or left)`)
      return
    }
    if (a.finalizing || this.rescaling || a.deployed.size < a.nodes.size) return
    const joined = [...live].filter((n) => !a.nodes.has(n) && this.node.members.get(n)?.state === 'idle')
    if (joined.length > 0) void this.rescale(a, `node ${joined.join(', ')} joined`)
  }

  /** Takes a checkpoint and restores from it onto the nodes live now. */
  private async rescale(a: Attempt, reason: string): Promise<void> {
    this.rescaling = true
    this.node.log.info('rescaling at the next checkpoint', { reason })
    const info = await a.checkpoints.trigger()
    if (this.current !== a || !this.active || !this.rescaling) return
    this.rescaling = false
    if (info === undefined) return
    this.restarting = true
    this.failuresInARow = 0
    await this.stopAttempt()
    this.deploy()
  }

  /**
   * This node leaves (SIGTERM): a checkpoint, then the lease is released so another node takes
   * over from it at once.
   */
  async handOver(): Promise<void> {
    const a = this.current
    if (a !== undefined && this.active && a.deployed.size === a.nodes.size) {
      a.checkpoints.pause()
      await a.checkpoints.trigger()
    }
    await this.stop()
    await this.release()
  }

  private async cancelJob(): Promise<void> {
    this.node.log.info('canceling the job')
    await this.stopAttempt()
    this.command({ t: 'cancel', epoch: this.epoch })
    await this.release()
  }

  private async failJob(reason: string): Promise<void> {
    this.node.log.error('the job failed', { reason })
    await this.stopAttempt()
    this.command({ t: 'fail', epoch: this.epoch, reason })
    await this.release()
  }

  /** Stops coordinating and lets another node take the lease at once. */
  async release(): Promise<void> {
    await this.stop()
    await this.lease.release().catch((e: unknown) => this.node.log.warn('could not release the job lease', { error: describeThrown(e) }))
  }

  /** What `weir status` shows. */
  status(): object {
    const a = this.current
    return {
      job: this.o.graph.name,
      coordinator: this.node.nodeId,
      epoch: this.epoch,
      attempt: a?.attempt,
      state: a === undefined ? 'recovering' : a.finalizing ? 'finishing' : a.deployed.size < a.nodes.size ? 'deploying' : 'running',
      parallelism: a?.plan.parallelism,
      lastCheckpoint: this.last === undefined ? undefined : { id: this.last.id, completedAt: this.last.completedAt },
      nodes: [...this.node.members.values()].map((m) => ({
        node: m.node,
        host: m.host,
        pid: m.pid,
        slots: m.slots,
        state: m.state,
        coordinator: m.coordinator,
        attempt: m.attempt,
        instances: m.stats ?? m.instances,
        recordsIn: m.recordsIn,
        dropped: m.dropped,
        silentMs: Math.round(performance.now() - m.seenAt),
      })),
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.watch !== undefined) clearInterval(this.watch)
    this.sub?.unsubscribe()
    for (const s of this.requests) s.unsubscribe()
    await this.stopAttempt()
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
