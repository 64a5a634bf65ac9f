/** Throwaway snapshot stores for tests: an embedded store in a tmp dir, a Postgres store in its own schema. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import { EmbeddedStore, PostgresStore, type SnapshotStore } from '../../index.ts'
import { withFallbackUser } from '../../persistence/postgres-store.ts'

export const PG_URL = process.env.WEIR_TEST_PG_URL ?? 'postgres://127.0.0.1:5432/test'

/** A client of the test database for direct queries, with the store's user fallback. */
export async function pgClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: withFallbackUser(PG_URL) })
  await client.connect()
  return client
}

export interface TestStore {
  kind: 'embedded' | 'postgres'
  store: SnapshotStore
  /** The `weir` CLI flags that reach the same store. */
  cliArgs: string[]
  cleanup(): Promise<void>
}

export function embeddedTestStore(): TestStore {
  const dir = mkdtempSync(join(tmpdir(), 'weir-test-'))
  const store = new EmbeddedStore({ dir })
  return {
    kind: 'embedded',
    store,
    cliArgs: ['--store', 'embedded', '--store-dir', dir],
    async cleanup() {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export function postgresTestStore(): TestStore {
  const schema = `weir_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
  const store = new PostgresStore({ connectionString: PG_URL, schema })
  return {
    kind: 'postgres',
    store,
    cliArgs: ['--store', PG_URL, '--pg-schema', schema],
    async cleanup() {
      await store.close()
      const client = await pgClient()
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await client.end()
    },
  }
}

export const testStores: { name: 'embedded' | 'postgres'; make: () => TestStore }[] = [
  { name: 'embedded', make: embeddedTestStore },
  { name: 'postgres', make: postgresTestStore },
]

/** An embedded store in a folder of its own, closed and removed when `t` ends. */
export function tempEmbeddedStore(t: Test, prefix = 'weir-test-'): EmbeddedStore {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const store = new EmbeddedStore({ dir })
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return store
}

