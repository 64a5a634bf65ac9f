/**
 * Cluster tests: `weir node` child processes of one job, against a NATS server and Postgres,
 * that a test starts, kills (SIGKILL, SIGSTOP), adds and waits for.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { waitFor } from './kill-runs.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** One `weir node` child. */
export interface NodeProcess {
  id: string
  child: ChildProcess
  /** The exit code, or null if a signal ended it. */
  exit: Promise<number | null>
  exited: boolean
  output(): string
}

export interface ClusterOptions {
  jobFile: string
  nats: string
  /** Store flags of every node (`postgresTestStore().cliArgs`). */
  store: string[]
  /** Environment of every node (the fixture's size and job name). */
  env: Record<string, string>
  /** Flags of every node, after the defaults (which are tuned for quick recovery). */
  args?: string[]
  checkpointIntervalMs?: number
}

/** Fast failure detection, so recovery fits a test: heartbeats every 200 ms, dead after 1.5 s. */
const QUICK = ['--heartbeat', '200', '--node-timeout', '1500', '--lease-expiry', '2500']

export class TestCluster {
  readonly nodes = new Map<string, NodeProcess>()
  private next = 1

  constructor(private readonly o: ClusterOptions) {}

  /** Starts a node; its id is `n<k>` unless given. */
  start(extra: string[] = [], id = `n${this.next++}`, env: Record<string, string> = {}): NodeProcess {
    let output = ''
    const args = [
      'bin/weir.js', 'node', this.o.jobFile, '--nats', this.o.nats, ...this.o.store, '--node-id', id,
      '--checkpoint-interval', String(this.o.checkpointIntervalMs ?? 200), ...QUICK, ...(this.o.args ?? []), ...extra,
    ]
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...this.o.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
    const node: NodeProcess = {
      id,
      child,
      exited: false,
      exit: new Promise((resolve) =>
        child.once('exit', (code) => {
          node.exited = true
          // A process the node started (tsx's esbuild) may hold its output open: stop reading
          // once the last lines had a moment to arrive.
          const done = setTimeout(() => {
            child.stdout!.destroy()
            child.stderr!.destroy()
            resolve(code)
          }, 200)
          child.once('close', () => {
            clearTimeout(done)
            resolve(code)
          })
        }),
      ),
      output: () => output,
    }
    this.nodes.set(id, node)
    return node
  }

  /** Nodes still running. */
  live(): NodeProcess[] {
    return [...this.nodes.values()].filter((n) => !n.exited)
  }

  /** The live node that logged last that it coordinates the job. */
  coordinator(): NodeProcess | undefined {
    let best: { node: NodeProcess; at: string } | undefined
    for (const n of this.live()) {
      for (const m of n.output().matchAll(/^(\S+) INFO .*coordinating the job/gm)) if (best === undefined || m[1]! > best.at) best = { node: n, at: m[1]! }
    }
    return best?.node
  }

  /** Waits until some node logged a completed checkpoint `count` times in all. */
  async checkpoints(count: number, timeoutMs = 60_000): Promise<boolean> {
    return await waitFor(() => [...this.nodes.values()].reduce((k, n) => k + (n.output().match(/checkpoint completed/g)?.length ?? 0), 0) >= count, timeoutMs)
  }

  async kill(node: NodeProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    node.child.kill(signal)
    if (signal === 'SIGKILL') await node.exit
  }

  /** Waits for every node to exit; returns their codes by id. */
  async finish(timeoutMs = 120_000): Promise<Map<string, number | null | 'timeout'>> {
    const out = new Map<string, number | null | 'timeout'>()
    const until = Date.now() + timeoutMs
    for (const n of this.nodes.values()) {
      let timer: NodeJS.Timeout | undefined
      const code = await Promise.race([n.exit, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.max(0, until - Date.now()))))])
      clearTimeout(timer)
      out.set(n.id, code)
    }
    return out
  }

  /** Ends every node still running (teardown). */
  stopAll(): void {
    for (const n of this.live()) {
      n.child.kill('SIGCONT')
      n.child.kill('SIGKILL')
    }
  }

  /** Every node's output, for a failing assertion. */
  logs(): string {
    return [...this.nodes.values()].map((n) => `== ${n.id}\n${n.output().split('\n').filter((l) => !l.includes('instance ->')).slice(-40).join('\n')}`).join('\n')
  }
}
