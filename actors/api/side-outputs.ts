/**
 * Side outputs: a keyed `process` function sends records of another type or purpose (late
 * records, alerts, ...) to a tagged output with `ctx.output(tag, record)`; `.sideOutput(tag)` on
 * the operator's stream reads them (docs/architecture.md section 17).
 */
import { JobDefinitionError } from '../errors.ts'

const TAG_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

/** Names a side output of records of type `T`. Create one with {@link outputTag}. */
export interface OutputTag<T> {
  readonly kind: 'output-tag'
  readonly id: string
  /** @internal carries T; never set. */
  readonly __type?: (record: T) => void
}

/**
 * Creates a side-output tag. Two different tags with the same id in one job are a mistake
 * (`JobDefinitionError`); use one tag object for the producer and the consumer.
 * @example
 * const late = outputTag<Click>('late-clicks')
 * const counts = clicks.keyBy((c) => c.user).process('count', { lateRecords: late, onTimer }, fn)
 * counts.sideOutput(late).sink('late', stdoutSink())
 */
export function outputTag<T>(id: string): OutputTag<T> {
  if (typeof id !== 'string' || !TAG_ID.test(id)) throw new JobDefinitionError(`outputTag id must match ${TAG_ID}, got ${JSON.stringify(id)}`)
  return Object.freeze({ kind: 'output-tag' as const, id })
}

/** True for a value made by {@link outputTag}. */
export function isOutputTag(value: unknown): value is OutputTag<unknown> {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'output-tag' && typeof (value as { id?: unknown }).id === 'string'
}
