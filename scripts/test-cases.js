// Counts the test cases of a raw TAP stream (what `tap --output-file` writes) and ends with the
// line CI reports: `N passed, N failed`.
//
// A case is a test with no subtests of its own: a `t.test()` leaf, or a test file with no
// subtests at all. A test that has subtests and also assertions of its own (outside them, such
// as a file's `t.fail()` when nats-server is missing) counts those as one more case, so a
// failure there is never lost. Assertions are not counted: one case may hold thousands.
//
// Before the last line it lists every skipped case with its reason (and prints `N skipped`),
// every case that asserted nothing, and every failed case. It exits 1 when a case failed or
// the stream is incomplete (a crashed runner, a missing plan), 2 on bad usage.
//
// Usage: node scripts/test-cases.js <raw.tap>
import { readFileSync } from 'node:fs'
import { Parser } from 'tap-parser'

const file = process.argv[2]
if (file === undefined) {
  process.stderr.write('usage: node scripts/test-cases.js <raw.tap>\n')
  process.exit(2)
}

/** @typedef {{ ok: boolean, name: string, skip?: string | boolean, todo?: string | boolean }} Point */
/** @typedef {{ name: string, children: Node[], own: Point[], result: Point | undefined }} Node */

/** Builds the tree of tests: a parser's child is a subtest, closed by the next test point of its parent. */
function tree(parser, node) {
  /** @type {Node[]} */
  const open = []
  parser.on('child', (child) => {
    const sub = { name: child.name ?? '', children: [], own: [], result: undefined }
    node.children.push(sub)
    open.push(sub)
    tree(child, sub)
  })
  parser.on('assert', (point) => {
    const sub = open.shift()
    if (sub === undefined) node.own.push(point)
    else {
      sub.result = point
      if (sub.name === '') sub.name = point.name
    }
  })
}

/** @type {Node} */
const root = { name: '', children: [], own: [], result: undefined }
const parser = new Parser()
tree(parser, root)
const final = await new Promise((resolve) => {
  parser.on('complete', resolve)
  parser.end(readFileSync(file, 'utf8'))
})

const passed = []
const failed = []
const skipped = []
const empty = []

// tap-parser sets `skip` and `todo` to false when absent, to true or the reason when present.
const marked = (why) => why !== false && why !== undefined
const reason = (why) => (typeof why === 'string' && why !== '' ? why : 'no reason given')

/** Sorts one case by the test point that closed it. */
function count(name, point) {
  if (marked(point.todo)) skipped.push(`${name}: todo, ${reason(point.todo)}`)
  else if (!point.ok) failed.push(name)
  else if (marked(point.skip)) skipped.push(`${name}: ${reason(point.skip)}`)
  else passed.push(name)
}

function walk(node, path) {
  for (const sub of node.children) {
    const at = [...path, sub.name]
    const name = at.join(' > ')
    if (sub.result === undefined) failed.push(`${name} (never ended)`)
    if (sub.children.length === 0) {
      if (sub.result !== undefined) count(name, sub.result)
      if (sub.own.length === 0 && sub.result?.ok === true && !marked(sub.result.skip) && !marked(sub.result.todo)) empty.push(name)
      continue
    }
    walk(sub, at)
    // Its own assertions, outside its subtests: one more case. A skipped subtest (a filter,
    // { skip }) is a test point with no subtest before it: a case of its own.
    const plain = sub.own.filter((p) => !marked(p.skip) && !marked(p.todo))
    for (const p of sub.own) if (!plain.includes(p)) count(`${name} > ${p.name}`, p)
    if (plain.length > 0) count(`${name} > (assertions outside subtests)`, plain.find((p) => !p.ok) ?? plain[0])
    // A test that did not end well although all inside it did: a timeout, a missing plan.
    if (sub.result !== undefined && !sub.result.ok && !marked(sub.result.todo) && failed.every((f) => !f.startsWith(`${name} > `))) failed.push(`${name} (the test itself)`)
  }
}
walk(root, [])
// Test points at the very top that close no file: the runner reporting a file it could not run.
for (const p of root.own) count(`(runner) ${p.name}`, p)
// No test at all is no success: the tests did not run (a missing service, a runner that crashed).
if (root.children.length === 0 && root.own.length === 0) failed.push('no test ran: the TAP stream is empty')
else if (!final.ok && failed.length === 0) failed.push(`the TAP stream did not end well (${final.bailout === false ? 'plan or count mismatch' : `bailed out: ${final.bailout}`})`)

if (empty.length > 0) {
  console.log(`${empty.length} case(s) passed without asserting anything:`)
  for (const name of empty) console.log(`  ${name}`)
}
if (failed.length > 0) {
  console.log('failed:')
  for (const name of failed) console.log(`  ${name}`)
}
for (const line of skipped) console.log(`skipped: ${line}`)
console.log(`${skipped.length} skipped`)
console.log(`${passed.length} passed, ${failed.length} failed`)
process.exitCode = failed.length > 0 ? 1 : 0
