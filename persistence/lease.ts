/**
 * What both stores share of job leases (docs/architecture.md section 8): the options, who a holder
 * is, whether a holder on this host is dead, and the held lease itself with its heartbeat. The
 * stores keep the storage side: a lease row in Postgres, lease files in the embedded folder.
 */
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { FencedError, type LeaseHolderInfo } from './errors.ts'
import { checkDuration, checkObject, rejectUnknownKeys } from './option-checks.ts'
import type { JobLease, LeaseOptions } from './store.ts'

/** {@link LeaseOptions} with the defaults applied. */
export interface ResolvedLeaseOptions {
  expiryMs: number
  heartbeatMs: number
}

export const DEFAULT_LEASE_EXPIRY_MS = 10_000

/**
 * Applies the defaults and checks the lease timing once.
 * @throws {InvalidOptionError} naming the first bad option (`<path>.expiryMs`, `<path>.heartbeatMs`).
 */
export function resolveLeaseOptions(options: LeaseOptions | undefined, path = 'lease'): ResolvedLeaseOptions {
  const given = options === undefined ? {} : checkObject(path, options)
  rejectUnknownKeys(path, given, ['expiryMs', 'heartbeatMs'])
  const expiryMs = checkDuration(`${path}.expiryMs`, given['expiryMs'] ?? DEFAULT_LEASE_EXPIRY_MS, { min: 2 })
  const heartbeatMs = checkDuration(`${path}.heartbeatMs`, given['heartbeatMs'] ?? Math.max(1, Math.floor(expiryMs / 3)), { min: 1, max: expiryMs - 1 })
  return { expiryMs, heartbeatMs }
}

/** A new holder: this process, now, with a fresh owner id. */
export function thisHolder(): LeaseHolderInfo {
  return { owner: randomUUID(), host: hostname(), pid: process.pid, since: Date.now() }
}

/** Owner ids of the leases this process holds now. */
const heldHere = new Set<string>()

/**
 * True if the holder ran on this host and is gone: its process died (a runner killed with
 * SIGKILL), or it is this process and no longer holds the lease (a runner whose release could
 * not reach the store). Its lease can be taken at once, without waiting for the expiry. A live
 * pid, even one reused by another program, only means waiting for the heartbeat to expire.
 */
export function deadOnThisHost(holder: Pick<LeaseHolderInfo, 'owner' | 'host' | 'pid'>): boolean {
  if (holder.host !== hostname()) return false
  if (holder.pid === process.pid) return !heldHere.has(holder.owner)
  try {
    process.kill(holder.pid, 0)
    return false
  } catch (err) {
    return (err as { code?: unknown }).code === 'ESRCH'
  }
}

/** Renews a lease: `true` if still held, `false` if a newer epoch exists; throws if it cannot tell. */
export type Renew = () => Promise<boolean>

/**
 * A lease a store instance holds. The heartbeat renews it every `heartbeatMs`; a renewal that
 * finds the lease taken, or a mutation that does (`markLost`), settles `lost`. A renewal that
 * fails (the store is unreachable) is tried again at the next beat: whether the lease survived
 * is only known once the store answers.
 */
export class HeldLease implements JobLease {
  readonly job: string
  readonly epoch: number
  readonly owner: string
  readonly host: string
  readonly pid: number
  readonly since: number
  /** How long this holder may go without a heartbeat. */
  readonly expiryMs: number
  readonly lost: Promise<FencedError>
  #onLost!: (error: FencedError) => void
  #lostError: FencedError | undefined
  #timer: NodeJS.Timeout | undefined
  #released = false
  readonly #renew: Renew
  readonly #release: () => Promise<void>
  readonly #heartbeatMs: number

  constructor(job: string, epoch: number, holder: LeaseHolderInfo, timing: ResolvedLeaseOptions, renew: Renew, release: () => Promise<void>) {
    this.job = job
    this.epoch = epoch
    this.owner = holder.owner
    this.host = holder.host
    this.pid = holder.pid
    this.since = holder.since
    this.lost = new Promise((resolve) => (this.#onLost = resolve))
    this.#renew = renew
    this.#release = release
    this.expiryMs = timing.expiryMs
    this.#heartbeatMs = timing.heartbeatMs
    heldHere.add(this.owner)
    this.#schedule()
  }

  /** Whether this lease may still be used for mutations. */
  get usable(): boolean {
    return !this.#released && this.#lostError === undefined
  }

  /** The error a mutation throws if this lease is not usable. */
  fenced(operation: string, currentEpoch?: number): FencedError {
    return this.#lostError ?? new FencedError(this.job, this.epoch, currentEpoch, operation)
  }

  /** Records that a newer epoch exists; returns the error to throw. */
  markLost(operation: string, currentEpoch?: number): FencedError {
    if (this.#lostError === undefined) {
      this.#lostError = new FencedError(this.job, this.epoch, currentEpoch, operation)
      heldHere.delete(this.owner)
      this.#stop()
      this.#onLost(this.#lostError)
    }
    return this.#lostError
  }

  async release(): Promise<void> {
    if (this.#released) return
    this.#released = true
    heldHere.delete(this.owner)
    this.#stop()
    if (this.#lostError === undefined) await this.#release()
  }

  #schedule(): void {
    this.#timer = setTimeout(() => void this.#beat(), this.#heartbeatMs)
    // A lease alone must not keep a finished process alive.
    this.#timer.unref()
  }

  async #beat(): Promise<void> {
    this.#timer = undefined
    let held: boolean
    try {
      held = await this.#renew()
    } catch {
      held = true
    }
    if (!this.usable) return
    if (!held) this.markLost('renew the lease')
    else this.#schedule()
  }

  #stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }
}
