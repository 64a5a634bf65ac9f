/** Running a script in a plain child node, for tests whose failure could disturb the test process itself. */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const REPO = fileURLToPath(new URL('../../', import.meta.url))

/** Runs an ES module script in a child node (with tsx), in the repository, and parses the JSON line it prints. */
export function runChild(script: string, dir: string, timeoutMs: number): Promise<unknown> {
  // A plain node: without the test runner's preloaded hooks, which run code of their own. It keeps
  // NODE_V8_COVERAGE, so the library code it runs counts in the coverage of `npm test`.
  const env: NodeJS.ProcessEnv = { ...process.env, WEIR_TEST_DIR: dir }
  delete env.NODE_OPTIONS
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: REPO, timeout: timeoutMs, env },
      (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`child failed: ${err.message}\n${stderr}`))
        else resolve(JSON.parse(stdout.trim().split('\n').at(-1)!))
      },
    )
  })
}
