/**
 * File writes that survive `kill -9` and power loss at any moment: a file is either absent or
 * complete, never half-written. Readers ignore names starting with `TEMP_PREFIX`.
 */
import { randomUUID } from 'node:crypto'
import { closeSync, fsync, openSync, renameSync, unlinkSync, write as fsWrite, writeSync } from 'node:fs'
import { mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'

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

/*
 * The embedded store's hot path: a checkpoint's file steps while the job runs flat out. Every
 * asynchronous step waits for the event loop, that is for an executor slice to end, so a chain
 * of ten small steps takes ten slices. Steps that only touch the page cache (open, close,
 * rename, mkdir, stat, writing a small file) take microseconds and are done synchronously; only
 * what waits for the disk (fsync) or copies much data is asynchronous.
 */

/** Files up to this size are written synchronously: a copy into the page cache of a few µs. */
const SMALL_WRITE = 64 * 1024

const writeAsync = promisify(fsWrite)
const fsyncAsync = promisify(fsync)

/**
 * {@link writeTempFile} with the small steps done synchronously: at most two waits on the event
 * loop (writing a large file, and its fsync), none for a small file that needs no fsync.
 */
export async function writeTempFileQuickly(dir: string, name: string, bytes: Uint8Array | string, sync = true): Promise<string> {
  const temp = join(dir, `${TEMP_PREFIX}${randomUUID()}-${name}`)
  const data = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes
  const fd = openSync(temp, 'wx')
  try {
    if (data.byteLength <= SMALL_WRITE) {
      for (let at = 0; at < data.byteLength; ) at += writeSync(fd, data, at, data.byteLength - at)
    } else {
      for (let at = 0; at < data.byteLength; ) at += (await writeAsync(fd, data, at, data.byteLength - at)).bytesWritten
    }
    if (sync) await fsyncAsync(fd)
  } catch (err) {
    closeSync(fd)
    await removeTemp(temp)
    throw err
  }
  closeSync(fd)
  return temp
}

/** Renames a temp file to `name` synchronously; removes the temp file if that fails. */
export function renameTempSync(temp: string, dir: string, name: string): void {
  try {
    renameSync(temp, join(dir, name))
  } catch (err) {
    try {
      unlinkSync(temp)
    } catch {
      // Ignored by readers and swept later; the rename's error is the one that matters.
    }
    throw err
  }
}

/** Flushes several directories' entries in parallel: one wait on the event loop for all. */
export async function syncDirs(dirs: readonly string[]): Promise<void> {
  if (process.platform === 'win32') return
  const fds = dirs.map((dir) => openSync(dir, 'r'))
  try {
    await Promise.all(fds.map((fd) => fsyncAsync(fd)))
  } finally {
    for (const fd of fds) closeSync(fd)
  }
}
