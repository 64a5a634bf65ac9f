/**
 * Signals and the watchdog, as a user of `weir run` meets them: Ctrl-C cancels a job and exits
 * 130 (SIGTERM 143), a second signal exits at once, and a process function that never returns is
 * reported (operator, key, how long) and still ends on SIGINT.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))

interface Run {
  child: ChildProcess
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr: () => string
  /** Resolves once stderr matches `pattern`; rejects after `ms`. */
  waitFor(pattern: RegExp, ms: number): Promise<string>
}

function weirRun(t: Test, mode: string): Run {
  const dir = mkdtempSync(join(tmpdir(), 'weir-signals-'))
  let stderr = ''
  const child = spawn(process.execPath, ['bin/weir.js', 'run', 'test/fixtures/user-code-job.ts', '--store-dir', dir, '--log-level', 'info'], {
    cwd: root,
    env: { ...process.env, WEIR_FIXTURE_MODE: mode },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const waiters: (() => void)[] = []
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
    for (const w of [...waiters]) w()
  })
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    child,
    exit,
    stderr: () => stderr,
    waitFor: (pattern, ms) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${pattern} on stderr within ${ms} ms:\n${stderr}`)), ms)
        const check = () => {
          const m = pattern.exec(stderr)
          if (m === null) return
          clearTimeout(timer)
          waiters.splice(waiters.indexOf(check), 1)
          resolve(m[0])
        }
        waiters.push(check)
        check()
      }),
  }
}

t.test('signals - SIGINT cancels the job gracefully and exits 130; SIGTERM exits 143', async (t) => {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    const run = weirRun(t, 'runs')
    await run.waitFor(/job -> running/, 20_000)
    run.child.kill(signal)
    t.same(await run.exit, { code, signal: null }, `${signal}: exit code ${code}`)
    t.match(run.stderr(), new RegExp(`${signal}: canceling the job \\(send it again to exit at once\\)`))
    t.match(run.stderr(), /job canceled/, `${signal}: the job was canceled, not killed`)
  }
})

t.test('signals - a second signal exits at once, without waiting for the graceful stop', async (t) => {
  const run = weirRun(t, 'slow-close')
  await run.waitFor(/job -> running/, 20_000)
  run.child.kill('SIGINT')
  await run.waitFor(/SIGINT: canceling the job/, 5_000)
  // The sink takes a minute to close: the second signal does not wait for it.
  run.child.kill('SIGINT')
  const began = Date.now()
  t.same(await run.exit, { code: 130, signal: null })
  t.ok(Date.now() - began < 5_000, 'at once')
  t.notMatch(run.stderr(), /job canceled/, 'the graceful stop had not finished')
})

t.test('watchdog - a process function that never returns is reported with operator, key and time; SIGINT still ends it', async (t) => {
  const run = weirRun(t, 'stuck')
  // The default report interval is 10 s.
  const line = await run.waitFor(/^.*watchdog: stuck for [\d.]+ s in .*$/m, 25_000)
  t.match(line, /WARN {2}\[user-code-stuck\] watchdog: stuck for 1\d\.\d s in operator spin\[0\] key "k3" \(a function that does not return blocks the whole job; SIGINT or SIGTERM now ends the process at once\)/)
  run.child.kill('SIGINT')
  const ended = await Promise.race([run.exit, new Promise((r) => setTimeout(() => r('still running'), 5_000))])
  t.same(ended, { code: null, signal: 'SIGINT' }, 'ended by the signal (the JS handler cannot run on a blocked thread)')
})
