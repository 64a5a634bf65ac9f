/**
 * The embedded store's job lock (docs/architecture.md section 8): one owner per job folder, fenced by
 * an epoch.
 *
 * The lock lives in the job's folder, not the store's, because one store folder (the CLI's
 * `.weir/snapshots`) holds every job run from a directory, and different jobs may run side by
 * side. Each owner has a file `lease-<epoch>.json` holding its owner id, host, pid, the start time
 * of its process, since, expiry and heartbeat interval; its modification time is the heartbeat. The epoch is in the name, so taking the lock
 * is one atomic, exclusive step: `link()` of a complete temp file to the next epoch's name,
 * which fails with EEXIST for every contender but one. The winner then deletes the older files,
 * lowest first, so a lease file that still exists without a successor is the current one: an
 * owner is fenced once its own file is gone or `lease-<epoch + 1>.json` exists. Releasing only
 * ages the file's heartbeat, never deletes it, so epochs never go back.
 */
import { randomUUID } from 'node:crypto'
import { statSync } from 'node:fs'
import { link, open, readdir, readFile, stat, unlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { mkdirDurable, syncDir, TEMP_PREFIX } from './durable-fs.ts'
import type { RecordedHolder } from './lease.ts'
import { judgeHolder, type Waiting } from './lease-takeover.ts'
import type { LeaseTakeover } from './store.ts'

const LEASE_FILE = /^lease-([1-9][0-9]{0,15})\.json$/

type LeaseFile = RecordedHolder

function leaseName(epoch: number): string {
  return `lease-${epoch}.json`
}

/**
 * Takes the job folder's lock for `holder` and returns its epoch, or the holder of the newest
 * lease file to wait for (lease-takeover.ts decides). Throws `JobAlreadyRunningError` if that
 * holder is alive.
 */
export async function takeJobLock(jobDir: string, job: string, holder: RecordedHolder, policy: LeaseTakeover): Promise<number | Waiting> {
  await mkdirDurable(jobDir)
  for (;;) {
    const epochs = await leaseEpochs(jobDir)
    const top = epochs.at(-1) ?? 0
    if (top > 0) {
      const current = await readLease(jobDir, top)
      // Gone meanwhile: a newer owner is deleting older files; look again.
      if (current === undefined) continue
      const verdict = judgeHolder(job, { holder: current.file, sinceHeartbeatMs: Date.now() - current.heartbeatAt }, policy)
      if (verdict !== 'take') return verdict
    }
    const next = top + 1
    if (!(await createExclusive(jobDir, leaseName(next), JSON.stringify(holder satisfies LeaseFile)))) {
      // Another runner took this epoch first; the next look finds it alive and refuses.
      continue
    }
    for (const epoch of epochs) await unlink(join(jobDir, leaseName(epoch))).catch(ignoreMissing)
    if (epochs.length > 0) await syncDir(jobDir)
    return next
  }
}

/** True if `epoch` is still the job folder's current lock. */
export async function holdsJobLock(jobDir: string, epoch: number): Promise<boolean> {
  const [own, successor] = await Promise.all([exists(join(jobDir, leaseName(epoch))), exists(join(jobDir, leaseName(epoch + 1)))])
  return own && !successor
}

/** The heartbeat: true if still held (and the heartbeat renewed), false if taken over. */
export async function renewJobLock(jobDir: string, epoch: number): Promise<boolean> {
  if (!(await holdsJobLock(jobDir, epoch))) return false
  const now = new Date()
  try {
    await utimes(join(jobDir, leaseName(epoch)), now, now)
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return false
    throw err
  }
  return true
}

/** Lets the next runner take the lock at once: the heartbeat is set to the distant past. */
export async function releaseJobLock(jobDir: string, epoch: number): Promise<void> {
  if (!(await holdsJobLock(jobDir, epoch))) return
  await utimes(join(jobDir, leaseName(epoch)), new Date(0), new Date(0)).catch(ignoreMissing)
}

async function leaseEpochs(jobDir: string): Promise<number[]> {
  const epochs: number[] = []
  for (const name of await readdir(jobDir)) {
    const match = LEASE_FILE.exec(name)
    if (match !== null) epochs.push(Number(match[1]))
  }
  return epochs.sort((a, b) => a - b)
}

async function readLease(jobDir: string, epoch: number): Promise<{ file: LeaseFile; heartbeatAt: number } | undefined> {
  const path = join(jobDir, leaseName(epoch))
  try {
    const [text, stats] = await Promise.all([readFile(path, 'utf8'), stat(path)])
    const parsed = JSON.parse(text) as Partial<LeaseFile>
    // Files written before the process start and the heartbeat interval were recorded lack them.
    const file: LeaseFile = {
      owner: String(parsed.owner),
      host: String(parsed.host),
      pid: Number(parsed.pid),
      since: Number(parsed.since),
      processStart: typeof parsed.processStart === 'number' ? parsed.processStart : undefined,
      expiryMs: typeof parsed.expiryMs === 'number' ? parsed.expiryMs : 0,
      heartbeatMs: typeof parsed.heartbeatMs === 'number' ? parsed.heartbeatMs : undefined,
    }
    return { file, heartbeatAt: stats.mtimeMs }
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined
    // A lease file is complete before it gets its name, so an unreadable one was damaged:
    // it protects nothing, and its heartbeat (expiry 0) counts as expired.
    if (err instanceof SyntaxError) return { file: { owner: '?', host: '?', pid: 0, since: 0, processStart: undefined, expiryMs: 0, heartbeatMs: undefined }, heartbeatAt: 0 }
    throw err
  }
}

/** Creates `name` with `text`, complete and durable, unless it exists: false then. */
async function createExclusive(dir: string, name: string, text: string): Promise<boolean> {
  const temp = join(dir, `${TEMP_PREFIX}${randomUUID()}-${name}`)
  const handle = await open(temp, 'wx')
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await link(temp, join(dir, name))
  } catch (err) {
    if ((err as { code?: unknown }).code === 'EEXIST') return false
    throw err
  } finally {
    await unlink(temp).catch(ignoreMissing)
  }
  await syncDir(dir)
  return true
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return false
    throw err
  }
}

function ignoreMissing(err: unknown): void {
  if ((err as { code?: unknown }).code !== 'ENOENT') throw err
}

/**
 * {@link holdsJobLock} without waiting on the event loop: two `stat` calls on the page cache,
 * cheap enough for the start of every mutation on the checkpoint path.
 */
export function holdsJobLockSync(jobDir: string, epoch: number): boolean {
  return statSync(join(jobDir, leaseName(epoch)), { throwIfNoEntry: false }) !== undefined && statSync(join(jobDir, leaseName(epoch + 1)), { throwIfNoEntry: false }) === undefined
}
