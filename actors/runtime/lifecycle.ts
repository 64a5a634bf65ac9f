/**
 * The lifecycle of an operator instance (docs/architecture.md section 4), an XState v5 machine:
 *
 * - `created`: built, not yet restored.
 * - `restoring`: loading its key groups and offsets from a snapshot.
 * - `running.processing`: consuming its inputs.
 * - `running.aligning`: a barrier arrived on some inputs; those are held until it arrives on all.
 * - `snapshotting`: taking the synchronous part of a snapshot and forwarding the barrier.
 * - `finished`: every input ended and the last records were processed.
 * - `failed`: user code or a channel failed; the supervisor restarts the job.
 * - `canceled`: stopped by the supervisor (another instance failed, or the job was canceled).
 */
import { setup } from 'xstate'

export type InstanceEvent =
  | { type: 'RESTORE' }
  | { type: 'RUN' }
  | { type: 'ALIGN'; checkpointId: number }
  | { type: 'ALIGN_ABORTED'; checkpointId: number }
  | { type: 'SNAPSHOT'; checkpointId: number }
  | { type: 'SNAPSHOT_TAKEN'; checkpointId: number }
  | { type: 'FINISH' }
  | { type: 'FAIL'; error: unknown }
  | { type: 'CANCEL' }

// Failing and canceling leave every state but the final ones.
const STOP = { FAIL: '#instance.failed', CANCEL: '#instance.canceled' } as const

export const instanceMachine = setup({
  types: { events: {} as InstanceEvent },
}).createMachine({
  id: 'instance',
  initial: 'created',
  states: {
    created: { on: { RESTORE: 'restoring', RUN: 'running', ...STOP } },
    restoring: { on: { RUN: 'running', ...STOP } },
    running: {
      initial: 'processing',
      states: {
        processing: { on: { ALIGN: 'aligning' } },
        aligning: { on: { ALIGN_ABORTED: 'processing', ALIGN: 'aligning' } },
      },
      on: { SNAPSHOT: 'snapshotting', FINISH: 'finished', ...STOP },
    },
    snapshotting: { on: { SNAPSHOT_TAKEN: 'running', FINISH: 'finished', ...STOP } },
    finished: { type: 'final' },
    failed: { type: 'final' },
    canceled: { type: 'final' },
  },
})

/** The lifecycle state as one dotted string, e.g. `running.aligning`. */
export type InstanceStatus =
  | 'created'
  | 'restoring'
  | 'running.processing'
  | 'running.aligning'
  | 'snapshotting'
  | 'finished'
  | 'failed'
  | 'canceled'

export function statusOf(value: unknown): InstanceStatus {
  if (typeof value === 'string') return value as InstanceStatus
  const [parent, child] = Object.entries(value as Record<string, string>)[0]!
  return `${parent}.${child}` as InstanceStatus
}
