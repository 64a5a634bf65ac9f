// One worker thread of `weir run --workers N` (cli/workers.ts starts it; cli/worker.ts is its body).
import { loadWeir } from './load-weir.js'

await loadWeir('worker')
