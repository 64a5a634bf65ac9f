// Loads Weir's code for bin/weir.js and bin/weir-worker.js. Job files are TypeScript: tsx loads
// them. An installed package runs its compiled JavaScript (dist/); a checkout of the repository
// runs its TypeScript sources, and a job file's `import ... from 'weir'` resolves to those same
// sources (the "weir-source" export condition), so the job and the runner share one copy of Weir.
import { existsSync } from 'node:fs'
import { register } from 'node:module'
import { register as registerTsx } from 'tsx/esm/api'

/** Registers the loaders and imports `cli/<name>` from the sources or the build. */
export async function loadWeir(name) {
  const sources = new URL(`../cli/${name}.ts`, import.meta.url)
  const fromSources = existsSync(sources)
  if (fromSources) {
    const addCondition = 'export function resolve(specifier, context, next) { return next(specifier, { ...context, conditions: [...context.conditions, "weir-source"] }) }'
    register(`data:text/javascript,${encodeURIComponent(addCondition)}`)
  }
  registerTsx()
  return await import(fromSources ? sources.href : `../dist/cli/${name}.js`)
}
