// Makes sure the services the tests need are up before `tap` runs: PostgreSQL (the store
// conformance suite and the exactly-once tests). Starts a local cluster that stopped, and says
// exactly what is missing when it cannot.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { connect } from 'node:net'

const url = new URL(process.env.WEIR_TEST_PG_URL ?? 'postgres://127.0.0.1:5432/test')
const host = url.hostname
const port = Number(url.port || 5432)

function reachable() {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    s.setTimeout(1000)
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
    s.once('timeout', () => (s.destroy(), resolve(false)))
  })
}

async function waitUp(ms) {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await reachable()) return true
    await new Promise((r) => setTimeout(r, 250))
  }
  return false
}

if (!(await reachable())) {
  const local = host === '127.0.0.1' || host === 'localhost'
  if (local && existsSync('/etc/postgresql')) {
    for (const version of readdirSync('/etc/postgresql')) {
      process.stderr.write(`test-services: PostgreSQL is not answering on ${host}:${port}; starting cluster ${version}/main\n`)
      try {
        execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'], { stdio: 'inherit' })
      } catch {
        // reported below if it still does not answer
      }
    }
  }
  if (!(await waitUp(15_000))) {
    process.stderr.write(
      `test-services: the tests need PostgreSQL at ${host}:${port} (database ${url.pathname.slice(1) || 'test'}, trust or password in WEIR_TEST_PG_URL).\n` +
        `  Nothing answers there and it could not be started here. Install and start PostgreSQL (e.g. apt-get install postgresql),\n` +
        `  or point WEIR_TEST_PG_URL at a reachable database.\n`,
    )
    process.exit(1)
  }
}
