/**
 * The layout check that `npm run lint` runs: the project's tree has no import circles, and a
 * circle, even one made only of type imports, fails the check and is named.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))

function check(dir?: string): Promise<{ status: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['scripts/import-cycles.js', ...(dir === undefined ? [] : [dir])], { cwd: root }, (err, stdout, stderr) => {
      resolve({ status: err === null ? 0 : Number(err.code), output: stdout + stderr })
    })
  })
}

t.test('the project has no import circles', async (t) => {
  const { status, output } = await check()
  t.equal(status, 0, output)
  t.match(output, /no import circles among \d+ files/)
})

t.test('a circle of type-only imports fails the check and is named; breaking it passes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-cycles-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'api'))
  writeFileSync(join(dir, 'api', 'builder.ts'), "import { windowed } from '../window.ts'\nexport class Builder { w = windowed }\n")
  writeFileSync(join(dir, 'window.ts'), "import type { Builder } from './api/builder.ts'\nexport const windowed = (b: Builder) => b\n")
  const circle = await check(dir)
  t.equal(circle.status, 1, 'the check fails')
  t.match(circle.output, 'api/builder.ts <-> window.ts', 'and names both files')
  writeFileSync(join(dir, 'window.ts'), 'export const windowed = (b: unknown) => b\n')
  const broken = await check(dir)
  t.equal(broken.status, 0, broken.output)
})
