/**
 * The body of one worker thread of `weir run --workers N` (started through bin/weir-worker.js):
 * a cluster node of the job, talking to the others over the process's in-process bus and
 * writing through the main thread's store.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { DEFAULT_TUNING } from '../actors/runtime/executor-options.ts'
import { BusConnection } from '../cluster/local-bus.ts'
import { WeirNode } from '../cluster/node.ts'
import { StoreClient } from '../cluster/store-proxy.ts'
import { describeThrown } from '../persistence/errors.ts'
import type { ResolvedCheckpointOptions } from '../supervisor/checkpoint-options.ts'
import { createLogger, type LogLevel } from '../actors/runtime/logger.ts'
import { loadJob } from './common.ts'

/** What the main thread gives each worker. */
export interface WorkerData {
  file: string
  nodeId: string
  workers: number
  checkpoints: ResolvedCheckpointOptions
  restore: 'latest' | 'none' | number
  level: LogLevel
  heartbeatMs: number
  nodeTimeoutMs: number
  busPort: MessagePort
  storePort: MessagePort
  storeDescription: string
}

/** What a worker tells the main thread when its node ends. */
export type WorkerResult = { t: 'done'; status: 'finished' | 'canceled'; coordinator: boolean } | { t: 'failed'; error: string }

const d = workerData as WorkerData
const bus = new BusConnection(d.busPort)
const store = new StoreClient(d.storePort, d.storeDescription)
try {
  const graph = (await loadJob(d.file)).graph()
  const logger = createLogger({ level: d.level }).child(graph.name)
  const node = new WeirNode({
    graph,
    store,
    nats: bus.asNats(),
    nodeId: d.nodeId,
    minNodes: d.workers,
    checkpoints: d.checkpoints,
    restore: d.restore,
    heartbeatMs: d.heartbeatMs,
    nodeTimeoutMs: d.nodeTimeoutMs,
    leaseExpiryMs: d.nodeTimeoutMs * 2,
    logger,
    tuning: DEFAULT_TUNING,
  })
  await node.start()
  const result = await node.done
  parentPort!.postMessage({ t: 'done', status: result.status, coordinator: result.coordinator } satisfies WorkerResult)
} catch (err) {
  parentPort!.postMessage({ t: 'failed', error: describeThrown(err) } satisfies WorkerResult)
} finally {
  await bus.close()
  await store.close()
}
