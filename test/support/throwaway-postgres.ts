/**
 * A PostgreSQL server of a test's own, on 127.0.0.1 and a free port, in a temporary folder: for
 * tests that kill the database. Runs the server as the `postgres` user when the tests run as root
 * (PostgreSQL refuses to run as root).
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'

export interface ThrowawayPostgres {
  url: string
  port: number
  start(): void
  /** Stops the server at once, as a crash would (`-m immediate`). */
  kill(): void
  /** Stops every process of the server (SIGSTOP): it keeps its sockets but answers nothing. */
  freeze(): void
  /** Lets a frozen server go on (SIGCONT). */
  thaw(): void
  cleanup(): void
}

function binDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a))
  return versions.map((v) => join(root, v, 'bin')).find((d) => existsSync(join(d, 'initdb')))
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  await new Promise((r) => server.close(r))
  return port
}

/** Why a throwaway server cannot run here, or undefined if it can. */
export function throwawayPostgresMissing(): string | undefined {
  if (binDir() === undefined) return 'PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql'
  return undefined
}

export async function startThrowawayPostgres(): Promise<ThrowawayPostgres> {
  const bin = binDir()
  if (bin === undefined) throw new Error(throwawayPostgresMissing())
  const dir = mkdtempSync(join(tmpdir(), 'weir-pg-'))
  const data = join(dir, 'data')
  const asRoot = userInfo().uid === 0
  let uid = 0
  let gid = 0
  if (asRoot) {
    uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
    gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
    chmodSync(dir, 0o755)
    chownSync(dir, uid, gid)
  }
  const run = (cmd: string, args: string[]) =>
    asRoot ? execFileSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { stdio: 'pipe' }) : execFileSync(join(bin, cmd), args, { stdio: 'pipe' })
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  const port = await freePort()
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`
  const pg: ThrowawayPostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start: () => void run('pg_ctl', ['-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', 'start']),
    kill: () => void run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']),
    freeze: () => signalAll(data, 'SIGSTOP'),
    thaw: () => signalAll(data, 'SIGCONT'),
    cleanup: () => {
      try {
        signalAll(data, 'SIGCONT')
      } catch {
        // not running
      }
      try {
        pg.kill()
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
  pg.start()
  return pg
}

/**
 * Sends `signal` to every process of the server in `data`: to stop, the postmaster first (so it
 * forks no more); to continue, its children first. A child that exited meanwhile is skipped.
 */
function signalAll(data: string, signal: NodeJS.Signals): void {
  const postmaster = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
  if (signal === 'SIGSTOP') process.kill(postmaster, signal)
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(postmaster)], { encoding: 'utf8' })
  for (const pid of children.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0)) {
    try {
      process.kill(pid, signal)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
    }
  }
  if (signal !== 'SIGSTOP') process.kill(postmaster, signal)
}
