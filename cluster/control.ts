/**
 * The control plane of a cluster job (docs/architecture.md section 21): the messages between the
 * coordinator and the nodes, and their subjects. Every message carries the coordinator's epoch
 * (its lease); a node drops commands of an older epoch than one it has seen, so a deposed
 * coordinator cannot command anything.
 */
import { Encoder } from 'cbor-x'
import type { ExecutionPlan } from './plan.ts'
import type { InstanceStats } from '../actors/runtime/executor-options.ts'

const wire = new Encoder({ useRecords: false })

/** Commands from the coordinator to every node, on `<root>.ctl`. */
export type Command =
  | { t: 'deploy'; epoch: number; attempt: number; from: number | null; plan: ExecutionPlan }
  | { t: 'trigger' | 'complete' | 'abort'; epoch: number; attempt: number; id: number }
  /** The job finished: close sinks and exit. */
  | { t: 'done'; epoch: number; attempt: number }
  /** The job was canceled (`weir cancel`). */
  | { t: 'cancel'; epoch: number }
  /** The job failed for good, or `node` may not join. */
  | { t: 'fail'; epoch: number; reason: string; node?: string }

/** Reports from nodes to the coordinator, on `<root>.coord`. */
export type Report =
  | { t: 'deployed'; epoch: number; attempt: number; node: string; error?: string }
  | { t: 'ack'; epoch: number; attempt: number; id: number; instance: string; bytes: number }
  | { t: 'decline'; epoch: number; attempt: number; id: number; instance: string; reason: string }
  | { t: 'finished'; epoch: number; attempt: number; node: string }
  | { t: 'failed'; epoch: number; attempt: number; node: string; reason: string; retryable: boolean }

/** What every node publishes every heartbeat, on `<root>.hb`. */
export interface Heartbeat {
  node: string
  host: string
  pid: number
  slots: number
  /** The job graph's fingerprint (cluster/plan.ts). */
  hash: string
  operators: Record<string, string>
  /** The attempt this node runs instances of, if any. */
  epoch: number
  attempt: number
  state: 'idle' | 'running' | 'finished' | 'leaving'
  coordinator: boolean
  /** True once the node ran any attempt: a new coordinator then resumes from the latest checkpoint. */
  ran: boolean
  /** `operator[index]` of each instance it runs. */
  instances: string[]
  /** Records taken in per operator by its instances. */
  recordsIn: Record<string, number>
  /** Each of its instances' lifecycle state, records in and out and backpressure. */
  stats?: InstanceStats[]
  /** Channel and control messages refused (bad bytes, old epochs, gaps). */
  dropped: number
  /** The newest completed checkpoint, as the coordinator knows it. */
  lastCheckpoint?: number
}

/** The subjects of one job, all under `<prefix>.<job>`. */
export function jobSubjects(prefix: string, job: string) {
  const root = `${prefix}.${subjectToken(job)}`
  return {
    root,
    control: `${root}.ctl`,
    reports: `${root}.coord`,
    heartbeats: `${root}.hb`,
    status: `${root}.req.status`,
    cancel: `${root}.req.cancel`,
  }
}

/** A job name as one subject token: NATS subjects split on dots and treat `*` and `>` as wildcards. */
export function subjectToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_')
}

export function encodeMessage(message: Command | Report | Heartbeat | object): Uint8Array {
  return wire.encode(message)
}

const isInt = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v)

/** Decodes a command; undefined for anything that is not one (counted by the caller). */
export function decodeCommand(bytes: Uint8Array): Command | undefined {
  const m = decodeObject(bytes)
  if (m === undefined || !isInt(m['epoch'])) return undefined
  switch (m['t']) {
    case 'deploy':
      return isInt(m['attempt']) && (m['from'] === null || isInt(m['from'])) && isPlan(m['plan']) ? (m as Command) : undefined
    case 'trigger':
    case 'complete':
    case 'abort':
      return isInt(m['attempt']) && isInt(m['id']) ? (m as Command) : undefined
    case 'done':
      return isInt(m['attempt']) ? (m as Command) : undefined
    case 'cancel':
      return m as Command
    case 'fail':
      return typeof m['reason'] === 'string' ? (m as Command) : undefined
    default:
      return undefined
  }
}

/** Decodes a report; undefined for anything that is not one. */
export function decodeReport(bytes: Uint8Array): Report | undefined {
  const m = decodeObject(bytes)
  if (m === undefined || !isInt(m['epoch']) || !isInt(m['attempt'])) return undefined
  switch (m['t']) {
    case 'deployed':
    case 'finished':
      return typeof m['node'] === 'string' ? (m as Report) : undefined
    case 'ack':
      return isInt(m['id']) && typeof m['instance'] === 'string' && isInt(m['bytes']) ? (m as Report) : undefined
    case 'decline':
      return isInt(m['id']) && typeof m['instance'] === 'string' && typeof m['reason'] === 'string' ? (m as Report) : undefined
    case 'failed':
      return typeof m['node'] === 'string' && typeof m['reason'] === 'string' ? (m as Report) : undefined
    default:
      return undefined
  }
}

/** Decodes a heartbeat; undefined for anything that is not one. */
export function decodeHeartbeat(bytes: Uint8Array): Heartbeat | undefined {
  const m = decodeObject(bytes)
  if (m === undefined || typeof m['node'] !== 'string' || !isInt(m['slots']) || typeof m['hash'] !== 'string' || !isInt(m['epoch']) || !isInt(m['attempt'])) return undefined
  if (!Array.isArray(m['instances']) || typeof m['operators'] !== 'object' || m['operators'] === null) return undefined
  return m as unknown as Heartbeat
}

function decodeObject(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v = wire.decode(bytes) as unknown
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

function isPlan(v: unknown): v is ExecutionPlan {
  if (typeof v !== 'object' || v === null) return false
  const p = v as Record<string, unknown>
  return typeof p['parallelism'] === 'object' && p['parallelism'] !== null && typeof p['assignments'] === 'object' && p['assignments'] !== null
}

/** True if generation a is newer than b. */
export function newer(a: { epoch: number; attempt: number }, b: { epoch: number; attempt: number } | undefined): boolean {
  return b === undefined || a.epoch > b.epoch || (a.epoch === b.epoch && a.attempt > b.attempt)
}
