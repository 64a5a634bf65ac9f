/**
 * What a runner that wants a job's lease does about the holder that has it now (docs/architecture.md
 * section 8), for both stores: take it at once, wait until the lease expires, or refuse. The
 * decision is a pure function of what the store recorded and what this host knows of the
 * holder's process; the stores read the lease and take it, this file says whether they may.
 *
 * A runner killed with SIGKILL and started again at once must not be refused by its own dead
 * predecessor: its lease is unexpired, and until its parent reaps it the dead process is a
 * zombie that still answers `kill(pid, 0)`. So on the holder's host a process that is gone, a
 * zombie, or another process under a reused pid is no holder at all. Elsewhere only the heartbeat
 * tells: one that stopped (no renewal for longer than an interval and a margin) is waited out to
 * the expiry and then fenced by the new epoch; one that goes on is a live runner, refused at once.
 */
import { JobAlreadyRunningError } from './errors.ts'
import { defaultHeartbeatMs, holderInfo, holderProcess, type HolderProcess, type RecordedHolder } from './lease.ts'
import type { LeaseTakeover, LeaseWait } from './store.ts'

/** The current lease as a runner that wants it sees it. */
export interface SeenLease {
  holder: RecordedHolder
  /** Time since the holder's last heartbeat, on the store's clock. */
  sinceHeartbeatMs: number
}

/** What to do about the current holder. */
export type Takeover =
  | { action: 'take'; reason: string }
  | { action: 'wait'; waitMs: number; recheckMs: number }
  | { action: 'refuse' }

const REFUSE: Takeover = { action: 'refuse' }

/**
 * How much later than its interval a heartbeat may come and still count as going on: a renewal
 * takes a round trip, and a busy event loop delays its timer.
 */
export function stoppedAfterMs(heartbeatMs: number): number {
  return heartbeatMs + Math.max(250, Math.ceil(heartbeatMs / 2))
}

/**
 * Decides about `seen`, whose holder's process looks like `process` from here. Under `refuse`
 * only an expired lease or a process known to be gone is taken (a zombie answers `kill(pid, 0)`
 * and so counted as alive before); nothing is waited for.
 */
export function decideTakeover(seen: SeenLease, process: HolderProcess, policy: LeaseTakeover): Takeover {
  const { holder, sinceHeartbeatMs } = seen
  if (sinceHeartbeatMs >= holder.expiryMs) return { action: 'take', reason: 'its lease expired' }
  if (process.kind === 'self') return REFUSE
  if (process.kind === 'gone') return { action: 'take', reason: 'its process is gone' }
  if (policy === 'refuse') return REFUSE
  if (process.kind === 'zombie') return { action: 'take', reason: 'its process exited (a zombie not yet reaped)' }
  if (process.kind === 'running' && process.startTime !== undefined && holder.processStart !== undefined && process.startTime !== holder.processStart) {
    return { action: 'take', reason: 'its pid belongs to another process now' }
  }
  const heartbeatMs = holder.heartbeatMs ?? defaultHeartbeatMs(holder.expiryMs)
  if (sinceHeartbeatMs > stoppedAfterMs(heartbeatMs)) {
    // Looked at again every interval: a holder that resumes is refused, one that dies is taken.
    return { action: 'wait', waitMs: Math.ceil(holder.expiryMs - sinceHeartbeatMs), recheckMs: heartbeatMs }
  }
  return REFUSE
}

/** A holder to wait for, and when to look again. */
export interface Waiting {
  wait: LeaseWait
  recheckMs: number
}

/**
 * The stores' step of a takeover: `'take'` if the current holder may be replaced now, a
 * {@link Waiting} if its heartbeat stopped. Throws `JobAlreadyRunningError` for a live holder.
 */
export function judgeHolder(job: string, seen: SeenLease, policy: LeaseTakeover): 'take' | Waiting {
  const decision = decideTakeover(seen, holderProcess(seen.holder), policy)
  if (decision.action === 'take') return 'take'
  if (decision.action === 'refuse') throw new JobAlreadyRunningError(job, holderInfo(seen.holder))
  return { wait: { job, holder: holderInfo(seen.holder), silentMs: Math.round(seen.sinceHeartbeatMs), waitMs: decision.waitMs }, recheckMs: decision.recheckMs }
}

/**
 * Takes a lease with `tryTake` (the epoch, or a holder to wait for), looking again after each
 * wait until it is taken or refused; `onWait` hears of each holder waited for, once.
 */
export async function takeWhenFree(
  tryTake: () => Promise<number | Waiting>,
  onWait: ((wait: LeaseWait) => void) | undefined,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<number> {
  let announced: string | undefined
  for (;;) {
    const outcome = await tryTake()
    if (typeof outcome === 'number') return outcome
    if (outcome.wait.holder.owner !== announced) {
      announced = outcome.wait.holder.owner
      onWait?.(outcome.wait)
    }
    await sleep(Math.max(10, Math.min(outcome.wait.waitMs, outcome.recheckMs)))
  }
}

/** The log line of a wait: whom it waits for and how long. */
export function describeLeaseWait(wait: LeaseWait): string {
  const { job, holder } = wait
  return (
    `waiting up to ${wait.waitMs} ms for the lease of job '${job}': its holder ${holder.owner} (host ${holder.host}, pid ${holder.pid}) ` +
    `has not renewed it for ${wait.silentMs} ms; it is taken over with a new epoch when it expires`
  )
}
