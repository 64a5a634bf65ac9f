/**
 * Negative controls for fault tests. A test that still passes when the mechanism it names is
 * switched off proves nothing, so each fault test is written as a body that takes a
 * {@link Mutation} and is run twice: as it is, where it must pass, and with the mutation, where
 * it must fail, for the reason given. The control runs the body against a {@link Probe} instead
 * of tap's `Test`: the first failed check ends it (the rest would only cost time), and the
 * control asserts that there was one and what it said.
 *
 * Mutations are switched on through the runtime's own options (`--restore none`,
 * `--checkpoint-mode at-least-once`, `WEIR_LEASE_TAKEOVER=refuse`), so no test-only code path
 * lives in the product.
 */
import { inspect } from 'node:util'
import type { MessageExtra } from '@tapjs/core'
import type { Test } from 'tap'

/** The checks a fault test's body uses: tap's `Test` has them, and so has {@link Probe}. */
export interface Checks {
  ok(value: unknown, ...say: MessageExtra): boolean
  notOk(value: unknown, ...say: MessageExtra): boolean
  equal(found: unknown, wanted: unknown, ...say: MessageExtra): boolean
  match(found: unknown, pattern: RegExp | string, ...say: MessageExtra): boolean
  comment(...args: unknown[]): void
  teardown(fn: () => unknown): void
}

/** A mechanism switched off, in the options a test passes to the runs it starts. */
export interface Mutation {
  /** Short name, for test titles. */
  name: string
  /** What the mutation does, in words. */
  describe: string
  /** `--restore` of every run: `none` starts each from an empty state at the start of its input. */
  restore?: 'none'
  /** `--checkpoint-mode` of every run. */
  mode?: 'at-least-once'
  /** Environment variables of every run, e.g. `WEIR_LEASE_TAKEOVER=refuse`. */
  env?: Record<string, string>
}

/** Restore switched off: every restart begins again from nothing, input included. */
export const RESTORE_OFF: Mutation = { name: 'restore off', describe: 'every run starts from an empty state and the beginning of its input (--restore none)', restore: 'none' }

/** Alignment switched off: checkpoints in at-least-once mode. */
export const AT_LEAST_ONCE: Mutation = { name: 'at-least-once', describe: 'barriers are not aligned (--checkpoint-mode at-least-once)', mode: 'at-least-once' }

/** A fault test: the same body for the real run and for each control. */
export type FaultBody = (t: Checks, mutation: Mutation | undefined) => Promise<void>

/** The message of a check, or `fallback` when it has none. */
function said(say: MessageExtra, fallback: string): string {
  return typeof say[0] === 'string' ? say[0] : fallback
}

/** Thrown by a {@link Probe} at its first failed check, to end the body early. */
class ControlFailed extends Error {
  override readonly name = 'ControlFailed'
}

/** Stands in for tap's `Test` in a control: notes checks, stops at the first that fails. */
export class Probe implements Checks {
  readonly passed: string[] = []
  failure: string | undefined
  private readonly teardowns: (() => unknown)[] = []

  private check(pass: boolean, message: string, detail: () => string): boolean {
    if (pass) {
      this.passed.push(message)
      return true
    }
    this.failure = `${message} (${detail()})`
    throw new ControlFailed(this.failure)
  }

  ok(value: unknown, ...say: MessageExtra): boolean {
    return this.check(Boolean(value), said(say, 'should be truthy'), () => `got ${inspect(value)}`)
  }

  notOk(value: unknown, ...say: MessageExtra): boolean {
    return this.check(!value, said(say, 'should be falsy'), () => `got ${inspect(value)}`)
  }

  equal(found: unknown, wanted: unknown, ...say: MessageExtra): boolean {
    return this.check(Object.is(found, wanted), said(say, 'should be equal'), () => `found ${inspect(found)}, wanted ${inspect(wanted)}`)
  }

  match(found: unknown, pattern: RegExp | string, ...say: MessageExtra): boolean {
    const hit = typeof found === 'string' && (typeof pattern === 'string' ? found.includes(pattern) : pattern.test(found))
    return this.check(hit, said(say, 'should match'), () => `${String(pattern)} not found in ${inspect(typeof found === 'string' ? found.slice(-300) : found)}`)
  }

  comment(): void {}

  teardown(fn: () => unknown): void {
    this.teardowns.push(fn)
  }

  /** Runs `body` to its end or its first failed check; an error it throws is its failure. */
  async run(body: (t: Checks) => Promise<void>): Promise<void> {
    try {
      await body(this)
    } catch (err) {
      if (!(err instanceof ControlFailed)) this.failure = `threw ${err instanceof Error ? `${err.name}: ${err.message}` : inspect(err)}`
    } finally {
      for (const fn of this.teardowns.reverse()) await fn()
    }
  }
}

/**
 * Asserts that `body` fails under `mutation`, with a first failure that matches `because` (so it
 * fails for the reason the test is about, not by accident).
 */
export async function expectToFailWhen(t: Test, mutation: Mutation, because: RegExp, body: FaultBody): Promise<void> {
  const probe = new Probe()
  await probe.run((checks) => body(checks, mutation))
  t.ok(probe.failure !== undefined, `the test fails when ${mutation.describe}`, { passedChecks: probe.passed })
  if (probe.failure === undefined) return
  t.comment(`control "${mutation.name}" failed as it should: ${probe.failure}`)
  t.match(probe.failure, because, 'for the reason the test is about')
}

/** A control of a fault test: the mutation, and what its first failure must say. */
export interface Control {
  mutation: Mutation
  because: RegExp
}

/** Registers `body` as test `name`, and each control as a test that runs it mutated and expects it to fail. */
export function faultTest(t: Test, name: string, body: FaultBody, controls: readonly Control[]): void {
  t.test(name, (tt) => body(tt, undefined))
  for (const c of controls) {
    t.test(`${name} - control: with ${c.mutation.name} it fails`, (tt) => expectToFailWhen(tt, c.mutation, c.because, body))
  }
}
