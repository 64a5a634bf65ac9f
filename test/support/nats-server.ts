/**
 * A nats-server of a test's own, on 127.0.0.1 and a free port, with a config file in a temporary
 * folder (user and password, TLS): for tests that restart or misconfigure the server.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface NatsServerOptions {
  user?: string
  password?: string
  tls?: { cert: string; key: string }
  /** The public key (`U...`) of the one user allowed in, who signs in with the nkey. */
  nkey?: string
  /** max_payload of the server, in bytes. */
  maxPayload?: number
}

export interface TestNatsServer {
  url: string
  port: number
  /** Stops it (SIGKILL) and waits for the exit. */
  kill(): Promise<void>
  /** Starts it again on the same port. */
  start(): Promise<void>
  cleanup(): Promise<void>
}

/** True if `nats-server` is on the PATH. */
export function hasNatsServer(): boolean {
  return spawnSync('nats-server', ['--version']).status === 0
}

export const NO_NATS_SERVER = 'nats-server is not installed: apt-get install nats-server (Debian), or put a nats-server binary from the NATS releases on the PATH; the cluster tests need it'

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port })
    c.once('connect', () => {
      c.destroy()
      resolve(true)
    })
    c.once('error', () => resolve(false))
  })
}

/** Starts a nats-server on a free port of 127.0.0.1; throws {@link NO_NATS_SERVER} if there is none. */
export async function startNatsServer(o: NatsServerOptions = {}): Promise<TestNatsServer> {
  if (!hasNatsServer()) throw new Error(NO_NATS_SERVER)
  const dir = mkdtempSync(join(tmpdir(), 'weir-nats-'))
  const port = await freePort()
  const lines = [`listen: 127.0.0.1:${port}`]
  if (o.maxPayload !== undefined) lines.push(`max_payload: ${o.maxPayload}`)
  if (o.user !== undefined) lines.push(`authorization { user: "${o.user}", password: "${o.password ?? ''}" }`)
  if (o.nkey !== undefined) lines.push(`authorization { users = [ { nkey: "${o.nkey}" } ] }`)
  if (o.tls !== undefined) lines.push(`tls { cert_file: "${o.tls.cert}", key_file: "${o.tls.key}" }`)
  const config = join(dir, 'nats.conf')
  writeFileSync(config, `${lines.join('\n')}\n`)
  let child: ChildProcess | undefined
  let stderr = ''
  const start = async () => {
    stderr = ''
    child = spawn('nats-server', ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const until = Date.now() + 10_000
    while (!(await accepts(port))) {
      if (child.exitCode !== null || Date.now() > until) throw new Error(`nats-server did not start on port ${port}: ${stderr}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const kill = async () => {
    const c = child
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise((r) => c.once('exit', r))
    c.kill('SIGKILL')
    await exited
  }
  await start()
  return {
    url: `${o.tls === undefined ? 'nats' : 'tls'}://127.0.0.1:${port}`,
    port,
    kill,
    start,
    cleanup: async () => {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A CA and a certificate for 127.0.0.1 and localhost signed by it, made with openssl in `dir`. */
export function makeTestCertificates(dir: string): { ca: string; cert: string; key: string } {
  const f = (name: string) => join(dir, name)
  const run = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' })
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=weir test CA')
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1')
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  run('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'))
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') }
}
