/**
 * What both stores share of job leases (docs/architecture.md section 8): the options, who a holder
 * is, what can be known of a holder's process on this host, and the held lease itself with its
 * heartbeat. The stores keep the storage side: a lease row in Postgres, lease files in the
 * embedded folder. What to do about a current holder is lease-takeover.ts.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { FencedError, InvalidOptionError, errorCode, type LeaseHolderInfo } from './errors.ts'
import { checkDuration, checkObject, rejectUnknownKeys } from './option-checks.ts'
import type { JobLease, LeaseOptions, LeaseTakeover, LeaseWait } from './store.ts'

/** {@link LeaseOptions} with the defaults applied. */
export interface ResolvedLeaseOptions {
  expiryMs: number
  heartbeatMs: number
  takeover: LeaseTakeover
  onWait: ((wait: LeaseWait) => void) | undefined
}

export const DEFAULT_LEASE_EXPIRY_MS = 10_000

const LEASE_KEYS = ['expiryMs', 'heartbeatMs', 'takeover', 'onWait']
const TAKEOVERS: readonly LeaseTakeover[] = ['wait', 'refuse']

/**
 * Applies the defaults and checks the lease options once. What `options` leaves out comes from
 * `base` (a store's own lease options) when given: the timing as a whole (a given `expiryMs`
 * brings its own default heartbeat), `takeover` and `onWait` each on their own.
 * @throws {InvalidOptionError} naming the first bad option (`<path>.expiryMs`, `<path>.takeover`, ...).
 */
export function resolveLeaseOptions(options: LeaseOptions | undefined, path = 'lease', base?: ResolvedLeaseOptions): ResolvedLeaseOptions {
  const given = options === undefined ? {} : checkObject(path, options)
  rejectUnknownKeys(path, given, LEASE_KEYS)
  const timed = given['expiryMs'] !== undefined || given['heartbeatMs'] !== undefined || base === undefined
  const expiryMs = timed ? checkDuration(`${path}.expiryMs`, given['expiryMs'] ?? DEFAULT_LEASE_EXPIRY_MS, { min: 2 }) : base.expiryMs
  const heartbeatMs = timed ? checkDuration(`${path}.heartbeatMs`, given['heartbeatMs'] ?? defaultHeartbeatMs(expiryMs), { min: 1, max: expiryMs - 1 }) : base.heartbeatMs
  const takeover = given['takeover'] ?? base?.takeover ?? 'wait'
  if (!TAKEOVERS.includes(takeover as LeaseTakeover)) throw new InvalidOptionError(`${path}.takeover`, `one of ${TAKEOVERS.map((t) => `'${t}'`).join(', ')}`, takeover)
  const onWait = given['onWait'] ?? base?.onWait
  if (onWait !== undefined && typeof onWait !== 'function') throw new InvalidOptionError(`${path}.onWait`, 'a function', onWait)
  return { expiryMs, heartbeatMs, takeover: takeover as LeaseTakeover, onWait: onWait as ResolvedLeaseOptions['onWait'] }
}

/** The heartbeat interval when none is given: a third of the expiry, so two beats may be missed. */
export function defaultHeartbeatMs(expiryMs: number): number {
  return Math.max(1, Math.floor(expiryMs / 3))
}

/**
 * A holder as its lease records it: who it is, the start time of its process (so a pid reused by
 * another process is told apart) and its lease timing (so another runner can tell a stopped
 * heartbeat from a late one).
 */
export interface RecordedHolder extends LeaseHolderInfo {
  /** Start of the holder's process in clock ticks since boot; undefined where unknown (no /proc, an older lease). */
  processStart: number | undefined
  expiryMs: number
  /** Undefined for a lease recorded before the interval was. */
  heartbeatMs: number | undefined
}

/** A new holder: this process, now, with a fresh owner id. */
export function thisHolder(timing: Pick<ResolvedLeaseOptions, 'expiryMs' | 'heartbeatMs'>): RecordedHolder {
  return { owner: randomUUID(), host: hostname(), pid: process.pid, since: Date.now(), processStart: ownStartTime(), ...timing }
}

/** The fields of a holder a person needs, for `JobAlreadyRunningError`. */
export function holderInfo(holder: LeaseHolderInfo): LeaseHolderInfo {
  return { owner: holder.owner, host: holder.host, pid: holder.pid, since: Math.round(holder.since) }
}

/** Owner ids of the leases this process holds now. */
const heldHere = new Set<string>()

/**
 * What can be known of a holder's process from here: nothing on another host; on this host,
 * whether it is gone, exited but not yet reaped by its parent (a zombie still answers
 * `kill(pid, 0)`), or running, with its start time when /proc has it.
 */
export type HolderProcess =
  | { kind: 'elsewhere' }
  /** This process, which holds the lease now. */
  | { kind: 'self' }
  | { kind: 'gone' }
  | { kind: 'zombie' }
  | { kind: 'running'; startTime: number | undefined }

/**
 * Looks at the holder's process. A holder that is this process but no longer holds the lease (a
 * runner whose release could not reach the store) is gone.
 */
export function holderProcess(holder: Pick<LeaseHolderInfo, 'owner' | 'host' | 'pid'>): HolderProcess {
  if (holder.host !== hostname()) return { kind: 'elsewhere' }
  if (holder.pid === process.pid) return heldHere.has(holder.owner) ? { kind: 'self' } : { kind: 'gone' }
  const stat = processStat(holder.pid)
  if (stat === 'gone') return { kind: 'gone' }
  if (stat !== undefined) return stat.state === 'Z' || stat.state === 'X' ? { kind: 'zombie' } : { kind: 'running', startTime: stat.startTime }
  // No /proc: a signal 0 tells a live pid from a dead one, nothing more.
  try {
    process.kill(holder.pid, 0)
  } catch (err) {
    if (errorCode(err) === 'ESRCH') return { kind: 'gone' }
  }
  return { kind: 'running', startTime: undefined }
}

/**
 * The state (field 3) and start time (field 22, clock ticks since boot) of process `pid` from
 * /proc/<pid>/stat; `'gone'` if /proc has no such process, undefined if this host has no /proc.
 * The name (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields
 * are counted from the last `)`.
 */
export function processStat(pid: number): { state: string; startTime: number } | 'gone' | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') return undefined
    return hasProc() ? 'gone' : undefined
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const startTime = Number(fields[22 - 3])
  return { state: fields[0] ?? '', startTime }
}

function ownStartTime(): number | undefined {
  const stat = processStat(process.pid)
  return typeof stat === 'object' ? stat.startTime : undefined
}

let procMounted: boolean | undefined
function hasProc(): boolean {
  if (procMounted === undefined) {
    try {
      readFileSync('/proc/self/stat')
      procMounted = true
    } catch {
      procMounted = false
    }
  }
  return procMounted
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
