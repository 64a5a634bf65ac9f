/**
 * File writes that survive `kill -9` and power loss at any moment: a file is either absent or
 * complete, never half-written. Readers ignore names starting with `TEMP_PREFIX`.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'

export const TEMP_PREFIX = '.tmp-'

/** Writes `name` in `dir` via a temp file, fsync and rename, then fsyncs `dir` to keep the rename. */
export async function writeFileAtomic(dir: string, name: string, bytes: Uint8Array | string): Promise<void> {
  const temp = await writeTempFile(dir, name, bytes)
  await renameTemp(temp, dir, name)
  await syncDir(dir)
}

/**
 * Writes `bytes` to a new temp file in `dir` and fsyncs it (unless `sync` is false: for files
 * whose loss in a power cut is harmless); returns its path. With {@link renameTemp} this is
 * `writeFileAtomic` without the directory fsync, for callers that make several renames in one
 * directory durable with one `syncDir` before anything depends on them.
 */
export async function writeTempFile(dir: string, name: string, bytes: Uint8Array | string, sync = true): Promise<string> {
  const temp = join(dir, `${TEMP_PREFIX}${randomUUID()}-${name}`)
  try {
    const handle = await open(temp, 'wx')
    try {
      await handle.writeFile(bytes)
      if (sync) await handle.sync()
    } finally {
      await handle.close()
    }
  } catch (err) {
    await removeTemp(temp)
    throw err
  }
  return temp
}

/** Renames a file from {@link writeTempFile} to `name`; removes the temp file if that fails. */
export async function renameTemp(temp: string, dir: string, name: string): Promise<void> {
  try {
    await rename(temp, join(dir, name))
  } catch (err) {
    await removeTemp(temp)
    throw err
  }
}

/**
 * Removes a temp file that will not be renamed. Readers ignore it and sweeps remove it later, so
 * failing here must not hide the error that matters.
 */
export async function removeTemp(temp: string): Promise<void> {
  await unlink(temp).catch(() => undefined)
}

/** Creates `dir` (and its parents) and makes its entry in the parent durable. */
export async function mkdirDurable(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true })
  if (created === undefined) return
  // Each new directory's entry lives in its parent: flush every parent from `dir` up to the
  // directory that already existed.
  let child = dir
  while (child !== created && dirname(child) !== child) {
    child = dirname(child)
    await syncDir(child)
  }
  await syncDir(dirname(created))
}

/** Flushes a directory's entries (renames, creations, deletions) to disk. */
export async function syncDir(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync; NTFS journals metadata anyway.
  if (process.platform === 'win32') return
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
