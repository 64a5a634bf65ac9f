#!/usr/bin/env node
// Fails when the project's own modules import each other in a circle, type-only imports included:
// a circle means two files that cannot be read, changed or tested one without the other.
// TypeScript's own parser (already a dependency) finds the imports; a dedicated tool such as
// madge would add some 500 packages to every install for this one check.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import ts from 'typescript'

// The tree to check: the project's by default, or the folder given.
const root = resolve(process.argv[2] ?? join(dirname(new URL(import.meta.url).pathname), '..'))
const skip = new Set(['node_modules', 'dist', 'coverage', '.tap', '.git', '.weir'])

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (skip.has(e.name) || e.name.startsWith('.')) return []
    const path = join(dir, e.name)
    if (e.isDirectory()) return sources(path)
    return /\.(ts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : []
  })
}

const files = sources(root)
const known = new Set(files)
const edges = new Map(
  files.map((file) => {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true)
    const targets = importedFiles.map((i) => i.fileName).filter((f) => f.startsWith('.')).map((f) => resolve(dirname(file), f))
    return [file, targets.filter((t) => known.has(t))]
  }),
)

// Tarjan's strongly connected components: every component of more than one file is a circle.
let counter = 0
const index = new Map()
const low = new Map()
const stack = []
const onStack = new Set()
const circles = []
function visit(v) {
  index.set(v, counter)
  low.set(v, counter++)
  stack.push(v)
  onStack.add(v)
  for (const w of edges.get(v)) {
    if (!index.has(w)) {
      visit(w)
      low.set(v, Math.min(low.get(v), low.get(w)))
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)))
  }
  if (low.get(v) !== index.get(v)) return
  const component = []
  let w
  do {
    w = stack.pop()
    onStack.delete(w)
    component.push(w)
  } while (w !== v)
  if (component.length > 1 || edges.get(v).includes(v)) circles.push(component.map((f) => relative(root, f)).sort())
}
for (const f of files) if (!index.has(f)) visit(f)

if (circles.length > 0) {
  console.error(`import circles (${circles.length}); break each by moving what both sides need into a file both import:`)
  for (const c of circles) console.error(`  ${c.join(' <-> ')}`)
  process.exit(1)
}
console.log(`no import circles among ${files.length} files`)
