// Prints line and branch coverage per top-level folder of the repository (index.ts on its own),
// from the json-summary that c8 writes after `npm test`.
//
// Usage: node scripts/coverage-by-folder.js [coverage-summary.json]
//   (default: .tap/c8-report/coverage-summary.json, c8's report-dir in package.json)
import { readFileSync } from 'node:fs'
import { relative, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const file = process.argv[2] ?? resolve(root, '.tap/c8-report/coverage-summary.json')
let summary
try {
  summary = JSON.parse(readFileSync(file, 'utf8'))
} catch (err) {
  process.stderr.write(`coverage-by-folder: cannot read ${file} (${err.message}); run npm test first\n`)
  process.exit(1)
}

const folders = new Map()
const add = (into, from) => {
  into.covered += from.covered
  into.total += from.total
}
for (const [path, entry] of Object.entries(summary)) {
  if (path === 'total') continue
  const folder = relative(root, path).split(/[\\/]/)[0]
  const f = folders.get(folder) ?? { lines: { covered: 0, total: 0 }, branches: { covered: 0, total: 0 } }
  add(f.lines, entry.lines)
  add(f.branches, entry.branches)
  folders.set(folder, f)
}

const pct = ({ covered, total }) => (total === 0 ? '   -  ' : `${((100 * covered) / total).toFixed(1).padStart(5)}%`)
const width = Math.max(5, ...[...folders.keys()].map((k) => k.length))
console.log(`${'folder'.padEnd(width)}  lines   branches`)
for (const [folder, f] of [...folders].sort(([a], [b]) => a.localeCompare(b))) console.log(`${folder.padEnd(width)}  ${pct(f.lines)}  ${pct(f.branches)}`)
if (summary.total !== undefined) console.log(`${'all'.padEnd(width)}  ${pct(summary.total.lines)}  ${pct(summary.total.branches)}`)
