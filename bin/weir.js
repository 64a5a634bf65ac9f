#!/usr/bin/env node
// The weir command. Job files are TypeScript: tsx loads them. An installed package runs its
// compiled JavaScript (dist/); a checkout of the repository runs its TypeScript sources, and a job
// file's `import ... from 'weir'` resolves to those same sources (the "weir-source" export
// condition), so the job and the runner share one copy of Weir.
import { existsSync } from 'node:fs'
import { register } from 'node:module'
import { register as registerTsx } from 'tsx/esm/api'

const [major] = process.versions.node.split('.').map(Number)
if (major < 20) {
  process.stderr.write(`weir: Node ${process.versions.node} is too old; Weir needs Node 20 or later\n`)
  process.exit(1)
}
const sources = new URL('../cli/main.ts', import.meta.url)
const fromSources = existsSync(sources)
if (fromSources) {
  const addCondition = 'export function resolve(specifier, context, next) { return next(specifier, { ...context, conditions: [...context.conditions, "weir-source"] }) }'
  register(`data:text/javascript,${encodeURIComponent(addCondition)}`)
}
registerTsx()
const { main } = await import(fromSources ? sources.href : '../dist/cli/main.js')
process.exitCode = await main(process.argv.slice(2))
