#!/usr/bin/env node
// The weir command. Job files are TypeScript: tsx loads them (and Weir itself) without a build step.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
