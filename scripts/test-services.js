// Makes sure the services the tests need are up before `tap` runs: the PostgreSQL database the
// store conformance suite and the exactly-once tests use (WEIR_TEST_PG_URL, or
// postgres://127.0.0.1:5432/test). It connects to that very database and runs `SELECT 1`; starts a
// local cluster that stopped; and otherwise says exactly what is missing and how to fix it. The
// cluster tests also need a nats-server binary (they start their own servers): installed with
// apt-get when missing and possible, else named with how to install it.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { userInfo } from 'node:os'
import pg from 'pg'

const url = new URL(process.env.WEIR_TEST_PG_URL ?? 'postgres://127.0.0.1:5432/test')
// As the Postgres store does: with no user in the URL nor in PGUSER, connect as the OS user.
if (url.username === '' && process.env.PGUSER === undefined) url.username = encodeURIComponent(userInfo().username)
const urlText = url.toString()
const host = url.hostname
const port = Number(url.port || 5432)
const database = decodeURIComponent(url.pathname.slice(1)) || 'postgres'
const user = decodeURIComponent(url.username) || process.env.PGUSER
const where = `${host}:${port}`

/** Runs `SELECT 1` on the test database; undefined when it answers, else the error. */
async function probe() {
  const client = new pg.Client({ connectionString: urlText, connectionTimeoutMillis: 2000, query_timeout: 2000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (err) {
    return err
  } finally {
    await client.end().catch(() => {})
  }
}

const DOWN = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', '57P03'])
const isDown = (err) => DOWN.has(err.code) || /timeout/i.test(err.message)

/** What is missing and how to fix it, from the error's SQLSTATE (or socket code). */
function explain(err) {
  switch (err.code) {
    case '3D000':
      return (
        `PostgreSQL answers at ${where}, but database "${database}" does not exist.\n` +
        `  Create it: createdb -h ${host} -p ${port} -U ${user} ${database}   (or: psql -c 'CREATE DATABASE "${database}"')`
      )
    case '28000':
      if (/role .* does not exist/.test(err.message)) {
        return (
          `PostgreSQL at ${where} has no role "${user}" (the user the tests connect as).\n` +
          `  Create it (createuser -h ${host} -p ${port} -s ${user}), or put an existing user in WEIR_TEST_PG_URL.`
        )
      }
    // falls through: refused for another reason (pg_hba.conf)
    case '28P01':
      return (
        `PostgreSQL at ${where} refused user "${user}" for database "${database}": ${err.message}.\n` +
        `  Put the right user and password in WEIR_TEST_PG_URL (postgres://user:password@${where}/${database}),\n` +
        `  or allow the user in pg_hba.conf (e.g. "host ${database} ${user} 127.0.0.1/32 trust") and reload PostgreSQL.`
      )
    case '42501':
      return `user "${user}" may not connect to database "${database}" at ${where}: GRANT CONNECT ON DATABASE "${database}" TO "${user}".`
    default:
      if (isDown(err)) {
        return (
          `the tests need PostgreSQL at ${where} (database ${database}); nothing answers there (${err.code ?? err.message})\n` +
          `  and it could not be started here. Install and start PostgreSQL (e.g. apt-get install postgresql),\n` +
          `  or point WEIR_TEST_PG_URL at a reachable database.`
        )
      }
      return `cannot use database "${database}" at ${where}: ${err.code === undefined ? '' : `${err.code} `}${err.message}`
  }
}

/** Starts the stopped clusters of a local Debian-style PostgreSQL install, if there is one. */
function startLocalClusters() {
  if (!(host === '127.0.0.1' || host === 'localhost') || !existsSync('/etc/postgresql')) return false
  for (const version of readdirSync('/etc/postgresql')) {
    process.stderr.write(`test-services: PostgreSQL is not answering on ${where}; starting cluster ${version}/main\n`)
    try {
      execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'], { stdio: 'inherit' })
    } catch {
      // reported below if it still does not answer
    }
  }
  return true
}

let err = await probe()
if (err !== undefined && isDown(err) && startLocalClusters()) {
  const until = Date.now() + 15_000
  while (err !== undefined && isDown(err) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250))
    err = await probe()
  }
}
if (err !== undefined) {
  process.stderr.write(`test-services: ${explain(err)}\n`)
  process.exit(1)
}

// The cluster tests start nats-server processes of their own (on free ports of 127.0.0.1).
function hasNatsServer() {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
if (!hasNatsServer()) {
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    process.stderr.write('test-services: nats-server is missing; installing the Debian package nats-server\n')
    try {
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'nats-server'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    } catch {
      // reported below
    }
  }
  if (!hasNatsServer()) {
    process.stderr.write(
      'test-services: the cluster tests need a nats-server binary on the PATH, and there is none.\n' +
        '  Install it (apt-get install nats-server on Debian/Ubuntu, or a binary from the NATS server releases)\n' +
        '  and run npm test again.\n',
    )
    process.exit(1)
  }
}
