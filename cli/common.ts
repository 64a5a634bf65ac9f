/**
 * What the commands of the `weir` command line share: store flags, number flags, loading a job
 * file, and the usage error.
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { ParseArgsConfig } from 'node:util'
import { JobBuilder } from '../actors/api/streams.ts'
import { EmbeddedStore } from '../persistence/embedded-store.ts'
import { PostgresStore } from '../persistence/postgres-store.ts'
import { checkDuration } from '../persistence/option-checks.ts'
import type { LeaseOptions, SnapshotStore } from '../persistence/store.ts'
import { DEFAULT_SNAPSHOT_DIR } from '../supervisor/job-runner.ts'

export const STORE_OPTIONS = {
  store: { type: 'string' },
  'store-dir': { type: 'string' },
  'pg-schema': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

/** A mistake on the command line: print it with the usage, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

export function int(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} needs a non-negative integer, got ${JSON.stringify(value)}`)
  return n
}

/** A duration flag in ms, checked by the one duration check (a timer waits at most 2^31-1 ms). */
export function ms(flag: string, value: string | undefined): number | undefined {
  const n = int(flag, value)
  try {
    return n === undefined ? undefined : checkDuration(`--${flag}`, n)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

/** `readOnly` for the inspecting commands: they never take a lease or create anything. */
export function storeFrom(values: { store?: string; 'store-dir'?: string; 'pg-schema'?: string }, readOnly = false): SnapshotStore {
  const store = values.store ?? 'embedded'
  const lease = readOnly ? {} : { lease: leaseFromEnv() }
  if (store === 'embedded') return new EmbeddedStore({ dir: values['store-dir'] ?? DEFAULT_SNAPSHOT_DIR, readOnly, ...lease })
  if (/^postgres(ql)?:\/\//.test(store)) {
    return new PostgresStore({ connectionString: store, readOnly, ...lease, ...(values['pg-schema'] === undefined ? {} : { schema: values['pg-schema'] }) })
  }
  throw new UsageError(`--store must be "embedded" or a postgres:// URL, got ${JSON.stringify(store)}`)
}

/** `WEIR_LEASE_TAKEOVER` (`wait` or `refuse`): what `weir run` does about another runner's unexpired lease. */
function leaseFromEnv(): LeaseOptions {
  const takeover = process.env['WEIR_LEASE_TAKEOVER']
  if (takeover === undefined || takeover === '') return {}
  if (takeover !== 'wait' && takeover !== 'refuse') throw new UsageError(`WEIR_LEASE_TAKEOVER must be "wait" or "refuse", got ${JSON.stringify(takeover)}`)
  return { takeover }
}

export async function loadJob(file: string): Promise<JobBuilder> {
  const mod = (await import(pathToFileURL(resolve(file)).href)) as { default?: unknown }
  const def = mod.default
  if (!(def instanceof JobBuilder) && typeof (def as { graph?: unknown })?.graph !== 'function') {
    throw new UsageError(`${file} must export a job as its default export (export default job('name')...), found ${def === undefined ? 'no default export' : typeof def}`)
  }
  return def as JobBuilder
}

/** The exit code of a command ended by a signal, as shells report it: 130 for SIGINT, 143 for SIGTERM. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1)
}
