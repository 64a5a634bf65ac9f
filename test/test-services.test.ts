/**
 * `npm test`'s pre-check connects to the very database the tests use and says what is missing:
 * the server, the database, or the role; and a missing nats-server, with how to install it.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { PG_URL } from './support/stores.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

function check(url: string, path?: string): Promise<{ status: number | null; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, WEIR_TEST_PG_URL: url, ...(path === undefined ? {} : { PATH: path }) }
  delete env.NODE_OPTIONS
  return new Promise((resolve) => {
    execFile(process.execPath, ['scripts/test-services.js'], { cwd: root, env, timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stderr })
    })
  })
}

const other = (change: (u: URL) => void) => {
  const u = new URL(PG_URL)
  change(u)
  return u.toString()
}

t.test('test services - the test database answering SELECT 1 passes quietly', async (t) => {
  t.same(await check(PG_URL), { status: 0, stderr: '' })
})

t.test('test services - a database that does not exist is named, with how to create it', async (t) => {
  const r = await check(other((u) => (u.pathname = '/weir_no_such_db')))
  t.equal(r.status, 1)
  t.match(r.stderr, /^test-services: PostgreSQL answers at [^ ]+, but database "weir_no_such_db" does not exist\.\n {2}Create it: createdb /)
})

t.test('test services - a role that does not exist is named', async (t) => {
  const r = await check(other((u) => (u.username = 'weir_no_such_role')))
  t.equal(r.status, 1)
  t.match(r.stderr, /^test-services: PostgreSQL at [^ ]+ has no role "weir_no_such_role"/)
})

t.test('test services - no server: says nothing answers and how to fix it', async (t) => {
  // Another loopback address, so the script does not try to start the local cluster.
  const r = await check('postgres://127.0.0.2:1/test')
  t.equal(r.status, 1)
  t.match(r.stderr, /^test-services: the tests need PostgreSQL at 127\.0\.0\.2:1 \(database test\); nothing answers there \(ECONNREFUSED\)/)
})

t.test('test services - a missing nats-server is named, with how to install it', async (t) => {
  // A PATH with neither nats-server nor apt-get: nothing can be installed, so it must be named.
  const empty = mkdtempSync(join(tmpdir(), 'weir-path-'))
  t.teardown(() => rmSync(empty, { recursive: true, force: true }))
  const r = await check(PG_URL, empty)
  t.equal(r.status, 1)
  t.match(r.stderr, /the cluster tests need a nats-server binary on the PATH, and there is none\.\n {2}Install it \(apt-get install nats-server/)
})
