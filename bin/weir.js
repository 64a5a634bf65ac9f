#!/usr/bin/env node
// The weir command. Job files are TypeScript: tsx loads them (and Weir itself) without a build step.
import { register } from 'tsx/esm/api'

const [major] = process.versions.node.split('.').map(Number)
if (major < 20) {
  process.stderr.write(`weir: Node ${process.versions.node} is too old; Weir needs Node 20 or later\n`)
  process.exit(1)
}
register()
const { main } = await import('../cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
