/**
 * `testJob`: runs a whole job in this process to its end, as `weir run` would, with strict state
 * on and a temporary embedded store that is removed afterwards, and hands back what a test
 * checks: how the job ended and the final keyed state of every keyed operator.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Clock } from '../actors/time/clock.ts'
import type { JobBuilder } from '../actors/api/streams.ts'
import type { JobGraph } from '../actors/api/graph.ts'
import type { Key } from '../actors/state/key-groups.ts'
import type { StateDescriptor } from '../actors/api/state.ts'
import { EmbeddedStore } from '../persistence/embedded-store.ts'
import { readSnapshotState } from '../persistence/snapshot-reader.ts'
import type { CheckpointOptions } from '../supervisor/checkpoint-options.ts'
import { createLogger } from '../actors/runtime/logger.ts'
import { runJob, type JobResult, type RunOptions } from '../supervisor/job-runner.ts'

/** Options of {@link testJob}. */
export interface TestJobOptions {
  /** Processing time (timers, TTL, idleness); a {@link ManualClock} in most tests. @default the wall clock */
  clock?: Clock
  /** Checkpoints while the job runs; the final state is read from the last one. @default every 100 ms */
  checkpoints?: CheckpointOptions
  /** Anything else of `runJob`'s options (not `store`, `checkpoints` or `clock`). @default no restarts, silent logs */
  run?: Omit<RunOptions, 'store' | 'checkpoints' | 'clock'>
}

/** What {@link testJob} returns. */
export interface TestJobRun {
  /** How the job ended (it finished: a failure rejects `testJob` with the job's error). */
  readonly result: JobResult
  /**
   * The final keyed state `state` (a descriptor or its name) of keyed operator `operator`: key ->
   * value, as the last checkpoint holds it. An empty map for a state no key wrote.
   */
  state<V = unknown>(operator: string, state: StateDescriptor | string): Map<Key, V>
}

/**
 * Runs `job` to its end and returns its result and final keyed state. Sinks are the job's own
 * (an `arraySink` collects what a test checks).
 * @example
 * const out: Total[] = []
 * const run = await testJob(totalsJob(out))
 * t.equal(run.state('totals', total).get('acct-1'), 120)
 */
export async function testJob(definition: JobBuilder | JobGraph, options: TestJobOptions = {}): Promise<TestJobRun> {
  const graph = 'graph' in definition && typeof definition.graph === 'function' ? definition.graph() : (definition as JobGraph)
  const dir = mkdtempSync(join(tmpdir(), 'weir-testjob-'))
  const store = new EmbeddedStore({ dir })
  try {
    const result = await runJob(graph, {
      logger: createLogger({ level: 'silent' }),
      progressIntervalMs: 0,
      restart: { type: 'none' },
      watchdogMs: 0,
      strictState: true,
      ...options.run,
      store,
      checkpoints: options.checkpoints ?? { intervalMs: 100 },
      ...(options.clock === undefined ? {} : { clock: options.clock }),
    })
    // Every keyed state of every keyed operator, read now: the store goes when this returns.
    const states = new Map<string, Map<string, Map<Key, unknown>>>()
    const last = result.lastCheckpoint?.id
    for (const op of graph.operators) {
      if (op.kind !== 'process') continue
      const byName = new Map<string, Map<Key, unknown>>()
      for (const d of op.states) byName.set(d.name, last === undefined ? new Map() : await readSnapshotState(store, graph.name, op.uid, d.name, last))
      states.set(op.uid, byName)
    }
    return {
      result,
      state<V>(operator: string, state: StateDescriptor | string): Map<Key, V> {
        const byName = states.get(operator)
        if (byName === undefined) throw new Error(`testJob: job ${graph.name} has no keyed operator ${operator} (keyed operators: ${[...states.keys()].join(', ') || 'none'})`)
        const name = typeof state === 'string' ? state : state.name
        const values = byName.get(name)
        if (values === undefined) throw new Error(`testJob: operator ${operator} declares no state ${name} (it declares: ${[...byName.keys()].join(', ') || 'none'})`)
        return values as Map<Key, V>
      },
    }
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
