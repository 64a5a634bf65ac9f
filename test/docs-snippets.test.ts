/**
 * The documentation's examples run as written: every ```ts runnable block of README.md and
 * docs/*.md is a whole program, run in a child node as a user would run it (importing 'weir' and
 * 'weir/testing'); it must exit 0, and where it states its output with `// prints: ...`
 * comments, print exactly those lines, in that order.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const MARKER = /^```ts runnable\s*$/
const PRINTS = /\/\/ prints: (.*)$/

interface Snippet {
  /** `docs/state.md:12`: the file and the line of the block's opening fence. */
  where: string
  code: string
}

interface SnippetRun {
  code: number | null
  stdout: string
  stderr: string
}

/** The runnable blocks of one markdown text. */
function extractSnippets(markdown: string, file: string): Snippet[] {
  const lines = markdown.split('\n')
  const out: Snippet[] = []
  for (let i = 0; i < lines.length; i++) {
    if (!MARKER.test(lines[i]!)) continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !lines[i]!.startsWith('```'); i++) body.push(lines[i]!)
    if (i === lines.length) throw new Error(`${file}:${start + 1}: a runnable block is never closed`)
    out.push({ where: `${file}:${start + 1}`, code: body.join('\n') + '\n' })
  }
  return out
}

/** The lines a snippet says it prints (its `// prints: ...` comments, in order), or undefined. */
function expectedOutput(code: string): string[] | undefined {
  const lines = code.split('\n').flatMap((l) => {
    const m = PRINTS.exec(l)
    return m === null ? [] : [m[1]!.trimEnd()]
  })
  return lines.length === 0 ? undefined : lines
}

// Snippets live inside the repository, so 'weir' resolves to this package (its self-reference,
// with the weir-source condition as in the tap config); each runs in a folder of its own, so
// files it writes (and the default store, .weir/snapshots) stay out of the repository.
const snippetDir = join(REPO, '.tap', 'docs-snippets', String(process.pid))
mkdirSync(snippetDir, { recursive: true })
t.teardown(() => rmSync(snippetDir, { recursive: true, force: true }))
const tsx = import.meta.resolve('tsx')
let written = 0

function runSnippet(code: string, name: string): Promise<SnippetRun> {
  const file = join(snippetDir, `${String(written++).padStart(2, '0')}-${name.replace(/[^a-z0-9]+/gi, '-')}.ts`)
  writeFileSync(file, code)
  const cwd = mkdtempSync(join(tmpdir(), 'weir-snippet-'))
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=weir-source', `--import=${tsx}`, file],
      { cwd, timeout: 45_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        rmSync(cwd, { recursive: true, force: true })
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
        resolve({ code, stdout, stderr })
      },
    )
  })
}

/** What is wrong with a run, or undefined when it passed. */
function verdict(run: SnippetRun, code: string): string | undefined {
  if (run.code !== 0) return `exited ${String(run.code)}:\n${run.stderr}`
  const expected = expectedOutput(code)
  if (expected === undefined) return undefined
  const printed = run.stdout.trimEnd().split('\n').map((l) => l.trimEnd())
  if (printed.join('\n') !== expected.join('\n')) return `printed\n${printed.join('\n')}\nbut says it prints\n${expected.join('\n')}`
  return undefined
}

/** Runs `tasks` at most `limit` at a time; each promise settles when its task does. */
function limited<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T>[] {
  let next = 0
  const results: Promise<T>[] = []
  const slots: Promise<void>[] = []
  const settle: ((v: T) => void)[] = []
  for (const _ of tasks) results.push(new Promise<T>((resolve) => settle.push(resolve)))
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++
      settle[i]!(await tasks[i]!())
    }
  }
  for (let i = 0; i < limit; i++) slots.push(worker())
  return results
}

const pages = ['README.md', ...readdirSync(join(REPO, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)]
const snippets = pages.flatMap((page) => extractSnippets(readFileSync(join(REPO, page), 'utf8'), page))

// The controls, first in the queue: a snippet that throws, and one that prints other than it says.
const THROWS = `import { job, generatorSource, arraySink, runJob } from 'weir'
const broken = job('broken')
  .source('in', generatorSource({ records: 10, keys: 2 }))
  .map((r) => { if (r.seq === 3) throw new Error('deliberately broken'); return r })
  .sink('out', arraySink([]))
await runJob(broken, { logLevel: 'silent', restart: { type: 'none' } })
console.log('unreachable') // prints: unreachable
`
const MISPRINTS = `console.log('2 + 2 =', 2 + 2) // prints: 2 + 2 = 5\n`
const runs = limited(
  [() => runSnippet(THROWS, 'control-throws'), () => runSnippet(MISPRINTS, 'control-misprints'), ...snippets.map((s) => () => runSnippet(s.code, s.where))],
  3,
)

t.test('docs snippets - the extractor takes only runnable blocks, with the line they start on', async (t) => {
  const md = ['# Page', '```ts', 'not run', '```', '', '```ts runnable', "console.log('a') // prints: a", '```'].join('\n')
  t.same(extractSnippets(md, 'page.md'), [{ where: 'page.md:6', code: "console.log('a') // prints: a\n" }])
  t.same(expectedOutput("console.log('a') // prints: a\nconsole.log(1)\n// prints: b  \n"), ['a', 'b'])
  t.throws(() => extractSnippets('```ts runnable\nx\n', 'open.md'), /open.md:1: a runnable block is never closed/)
})

t.test('docs snippets - every docs page and the README has a runnable snippet', async (t) => {
  // architecture.md is the design, section by section; it runs nothing.
  for (const page of pages.filter((p) => p !== 'docs/architecture.md')) t.ok(snippets.some((s) => s.where.startsWith(`${page}:`)), `${page} has a runnable snippet`)
})

t.test('docs snippets - control: a snippet that throws fails', async (t) => {
  const run = await runs[0]!
  t.not(run.code, 0, 'exits non-zero')
  t.match(run.stderr, /deliberately broken/, 'with the error it threw')
  t.match(verdict(run, THROWS), /^exited /, 'and so fails the check')
})

t.test('docs snippets - control: a snippet that prints other than it says fails', async (t) => {
  const run = await runs[1]!
  t.equal(run.code, 0)
  t.match(verdict(run, MISPRINTS), /printed\n2 \+ 2 = 4\nbut says it prints\n2 \+ 2 = 5/)
})

snippets.forEach((s, i) => {
  t.test(`docs snippets - ${s.where} runs and prints what it says`, async (t) => {
    const problem = verdict(await runs[i + 2]!, s.code)
    t.equal(problem, undefined, problem ?? 'passes')
  })
})
