/**
 * The lifecycle of a job (docs/architecture.md section 4), an XState v5 machine:
 *
 * - `created`: defined, not started.
 * - `scheduling`: opening the store, building and restoring instances.
 * - `running`: instances process records; checkpoints are taken.
 * - `failing`: an instance failed; the attempt is being stopped.
 * - `restarting`: the restart strategy allowed a restart; waiting for its delay, then restoring.
 * - `canceling` -> `canceled`: stopped on request.
 * - `finished`: every source ended and every record was processed.
 * - `failed`: the failure cannot be retried, or the restart strategy gave up.
 * - `suspended`: stopped with a savepoint.
 */
import { setup } from 'xstate'

export type JobEvent =
  | { type: 'SCHEDULE' }
  | { type: 'RUNNING' }
  | { type: 'FAIL'; error: unknown }
  | { type: 'RESTART' }
  | { type: 'GIVE_UP' }
  | { type: 'FINISH' }
  | { type: 'CANCEL' }
  | { type: 'CANCELED' }
  | { type: 'SUSPEND' }

export type JobStatus = 'created' | 'scheduling' | 'running' | 'failing' | 'restarting' | 'canceling' | 'canceled' | 'finished' | 'failed' | 'suspended'

export const jobMachine = setup({ types: { events: {} as JobEvent } }).createMachine({
  id: 'job',
  initial: 'created',
  states: {
    created: { on: { SCHEDULE: 'scheduling' } },
    scheduling: { on: { RUNNING: 'running', FAIL: 'failing' } },
    running: { on: { FAIL: 'failing', FINISH: 'finished', SUSPEND: 'suspended' } },
    failing: { on: { RESTART: 'restarting', GIVE_UP: 'failed' } },
    restarting: { on: { RUNNING: 'running', FAIL: 'failing' } },
    canceling: { on: { CANCELED: 'canceled' } },
    canceled: { type: 'final' },
    finished: { type: 'final' },
    failed: { type: 'final' },
    suspended: { type: 'final' },
  },
  on: { CANCEL: '.canceling' },
})
