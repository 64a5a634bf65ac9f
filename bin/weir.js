#!/usr/bin/env node
// The weir command (bin/load-weir.js says where its code comes from).
const [major] = process.versions.node.split('.').map(Number)
if (major < 20) {
  process.stderr.write(`weir: Node ${process.versions.node} is too old; Weir needs Node 20 or later\n`)
  process.exit(1)
}
const { loadWeir } = await import('./load-weir.js')
const { main } = await loadWeir('main')
process.exitCode = await main(process.argv.slice(2))
