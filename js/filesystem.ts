// `sandbox.files` (Filesystem): read, write, list and watch the sandbox's files; the handle of a
// directory watch (WatchHandle); the entry and event types.
import type { ConnectionOpts, Username } from './connection'
import { InvalidArgumentError, mapError } from './errors'
import { call, type FsOptions, type NativeFiles, type NativeWatchHandle } from './internal/native'
import { entryInfo, uploadData, writeInfo } from './internal/values'

/** Type of a filesystem object. */
export const FileType: { readonly FILE: 'file'; readonly DIR: 'dir' } = Object.freeze({ FILE: 'file', DIR: 'dir' })
export type FileType = (typeof FileType)[keyof typeof FileType]

/** A written file. */
export interface WriteInfo {
  name: string
  type?: FileType
  path: string
}

/** A filesystem object. */
export interface EntryInfo extends WriteInfo {
  /** Size in bytes. */
  size: number
  /** Mode and permission bits. */
  mode: number
  /** e.g. `-rw-r--r--`. */
  permissions: string
  owner: string
  group: string
  modifiedTime?: Date
  symlinkTarget?: string
}

/** One file of `files.write([...])`. */
export type WriteEntry = { path: string; data: string | ArrayBuffer | Blob | ReadableStream }

/** Options of filesystem requests. */
export interface FilesystemRequestOpts extends Partial<Pick<ConnectionOpts, 'requestTimeoutMs'>> {
  /** User for the operation (ownership of created files, relative paths). */
  user?: Username
}

/** Options of `files.write()`. */
export interface FilesystemWriteOpts extends FilesystemRequestOpts {
  /** Accepted for compatibility; uploads are not compressed. */
  gzip?: boolean
  /** Upload as `application/octet-stream` (one request per file) instead of multipart. @default false */
  useOctetStream?: boolean
}

/** Options of `files.read()`. */
export interface FilesystemReadOpts extends FilesystemRequestOpts {
  /** Accepted for compatibility. */
  gzip?: boolean
}

/** Options of `files.list()`. */
export interface FilesystemListOpts extends FilesystemRequestOpts {
  /** How deep to list (at least 1). @default 1 */
  depth?: number
}

/** What happened to a watched filesystem object. */
export const FilesystemEventType: {
  /** Permissions or ownership changed. */
  readonly CHMOD: 'chmod'
  /** Created. */
  readonly CREATE: 'create'
  /** Removed. */
  readonly REMOVE: 'remove'
  /** Renamed or moved away (the new name shows up as `create`). */
  readonly RENAME: 'rename'
  /** Written to. */
  readonly WRITE: 'write'
} = Object.freeze({ CHMOD: 'chmod', CREATE: 'create', REMOVE: 'remove', RENAME: 'rename', WRITE: 'write' })
export type FilesystemEventType = (typeof FilesystemEventType)[keyof typeof FilesystemEventType]

/** A change in a watched directory. */
export interface FilesystemEvent {
  /** Path of the object, relative to the watched directory. */
  name: string
  type: FilesystemEventType
}

/** Options of `files.watchDir()`. */
export interface WatchOpts extends FilesystemRequestOpts {
  /** Time limit of the watch in **milliseconds**; `0` = none. @default 60_000 */
  timeoutMs?: number
  /**
   * Called once when the watch ends: without an argument when the sandbox ended it, with the
   * error otherwise (a `TimeoutError` after `timeoutMs`, and after `stop()`).
   */
  onExit?: (err?: Error) => void | Promise<void>
  /** Watch subdirectories too. @default false */
  recursive?: boolean
}

/**
 * @internal A running native watch whose events go to `onEvent` and whose end goes to `onExit`.
 * (The constructor is not public, and cannot take the native handle without naming the addon's
 * types in the package's declarations: this sets it instead.)
 */
export let newWatchHandle: (native: NativeWatchHandle, onEvent: WatchEventCallback | undefined, onExit: WatchOpts['onExit']) => WatchHandle

type WatchEventCallback = (event: FilesystemEvent) => void | Promise<void>

/** A running directory watch. */
export class WatchHandle {
  #native!: NativeWatchHandle
  #stopped = false

  /** Not public: `files.watchDir()` makes watches. */
  protected constructor() {}

  static {
    newWatchHandle = (native, onEvent, onExit) => {
      const handle = new WatchHandle()
      handle.#native = native
      handle.#pump(onEvent, onExit)
      return handle
    }
  }

  async #pump(onEvent: WatchEventCallback | undefined, onExit: WatchOpts['onExit']): Promise<void> {
    try {
      for (;;) {
        const e = await this.#native.nextEvent()
        if (!e) break
        if (!this.#stopped) onEvent?.({ name: e.name, type: e.type as FilesystemEventType })
      }
    } catch (err) {
      this.#native.stop()
      onExit?.(mapError(err) as Error)
      return
    }
    onExit?.()
  }

  /** Stops watching; no `onEvent` call follows. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#native.stop()
  }
}

function fsOpts(o: FilesystemWriteOpts | undefined): FsOptions | undefined {
  if (!o) return undefined
  return { user: o.user, requestTimeoutMs: o.requestTimeoutMs, useOctetStream: o.useOctetStream }
}

/** @internal `sandbox.files` of a native sandbox (not the constructor: see {@link newWatchHandle}). */
export let newFilesystem: (native: NativeFiles) => Filesystem

/** `sandbox.files`: the sandbox's filesystem. */
export class Filesystem {
  #native!: NativeFiles

  /** Not public: every sandbox has its own, `sandbox.files`. */
  protected constructor() {}

  static {
    newFilesystem = (native) => {
      const files = new Filesystem()
      files.#native = native
      return files
    }
  }

  /**
   * Reads a file as text.
   * @throws FileNotFoundError when it does not exist.
   */
  read(path: string, opts?: FilesystemReadOpts & { format?: 'text' }): Promise<string>
  /** Reads a file as bytes. */
  read(path: string, opts?: FilesystemReadOpts & { format: 'bytes' }): Promise<Uint8Array>
  /** Reads a file as a `Blob`. */
  read(path: string, opts?: FilesystemReadOpts & { format: 'blob' }): Promise<Blob>
  /** Reads a file as a stream of bytes. */
  read(path: string, opts?: FilesystemReadOpts & { format: 'stream' }): Promise<ReadableStream<Uint8Array>>
  async read(
    path: string,
    opts?: FilesystemReadOpts & { format?: 'text' | 'bytes' | 'blob' | 'stream' },
  ): Promise<string | Uint8Array | Blob | ReadableStream<Uint8Array>> {
    const format = opts?.format ?? 'text'
    if (format === 'text') return call(this.#native.readText(path, fsOpts(opts)))
    if (format === 'stream') {
      const s = await call(this.#native.readStream(path, fsOpts(opts)))
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          const chunk = await call(s.nextChunk())
          if (chunk === null) controller.close()
          else controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))
        },
      })
    }
    const b = await call(this.#native.read(path, fsOpts(opts)))
    // The addon's Buffer has an ArrayBuffer of its own (never a SharedArrayBuffer).
    const bytes = new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, b.length)
    return format === 'blob' ? new Blob([bytes]) : bytes
  }

  /** Writes a file (parents are created, an existing file is replaced). */
  write(path: string, data: string | ArrayBuffer | Blob | ReadableStream, opts?: FilesystemWriteOpts): Promise<WriteInfo>
  /** Writes several files. */
  write(files: WriteEntry[], opts?: FilesystemWriteOpts): Promise<WriteInfo[]>
  async write(
    pathOrFiles: string | WriteEntry[],
    dataOrOpts?: string | ArrayBuffer | Blob | ReadableStream | FilesystemWriteOpts,
    opts?: FilesystemWriteOpts,
  ): Promise<WriteInfo | WriteInfo[]> {
    if (typeof pathOrFiles !== 'string' && !Array.isArray(pathOrFiles)) {
      throw new Error('Path or files are required')
    }
    if (typeof pathOrFiles === 'string' && Array.isArray(dataOrOpts)) {
      throw new Error(
        'Cannot specify both path and array of files. You have to specify either path and data for a single file or an array for multiple files.',
      )
    }
    if (typeof pathOrFiles === 'string') {
      const data = await uploadData(dataOrOpts)
      return writeInfo(await call(this.#native.write(pathOrFiles, data, fsOpts(opts))))
    }
    if (pathOrFiles.length === 0) return []
    const files = []
    for (const f of pathOrFiles) files.push({ path: f.path, data: await uploadData(f.data) })
    const infos = await call(this.#native.writeFiles(files, fsOpts(dataOrOpts as FilesystemWriteOpts | undefined)))
    return infos.map(writeInfo)
  }

  /** Writes several files. */
  async writeFiles(files: WriteEntry[], opts?: FilesystemWriteOpts): Promise<WriteInfo[]> {
    return this.write(files, opts)
  }

  /**
   * Lists a directory.
   * @throws InvalidArgumentError when `depth` is below 1; FileNotFoundError when it does not exist.
   */
  async list(path: string, opts?: FilesystemListOpts): Promise<EntryInfo[]> {
    if (typeof opts?.depth === 'number' && opts.depth < 1) {
      throw new InvalidArgumentError('depth should be at least one')
    }
    const entries = await call(this.#native.list(path, opts?.depth, fsOpts(opts)))
    return entries.map(entryInfo)
  }

  /** Creates a directory and its parents: `false` if it already exists. */
  async makeDir(path: string, opts?: FilesystemRequestOpts): Promise<boolean> {
    return call(this.#native.makeDir(path, fsOpts(opts)))
  }

  /** Renames (moves) a file or directory. */
  async rename(oldPath: string, newPath: string, opts?: FilesystemRequestOpts): Promise<EntryInfo> {
    return entryInfo(await call(this.#native.rename(oldPath, newPath, fsOpts(opts))))
  }

  /** Removes a file or directory (recursively). */
  async remove(path: string, opts?: FilesystemRequestOpts): Promise<void> {
    await call(this.#native.remove(path, fsOpts(opts)))
  }

  /** Whether a file or directory exists. */
  async exists(path: string, opts?: FilesystemRequestOpts): Promise<boolean> {
    return call(this.#native.exists(path, fsOpts(opts)))
  }

  /** Information about a file or directory. */
  async getInfo(path: string, opts?: FilesystemRequestOpts): Promise<EntryInfo> {
    return entryInfo(await call(this.#native.getInfo(path, fsOpts(opts))))
  }

  /**
   * Watches a directory; resolves once the watch runs.
   * @param onEvent called with each change.
   * @throws FileNotFoundError when the directory does not exist; InvalidArgumentError when it is a file.
   */
  async watchDir(path: string, onEvent: (event: FilesystemEvent) => void | Promise<void>, opts?: WatchOpts): Promise<WatchHandle> {
    const native = { recursive: opts?.recursive, timeoutMs: opts?.timeoutMs, user: opts?.user, requestTimeoutMs: opts?.requestTimeoutMs }
    const h = await call(this.#native.watchDir(path, native))
    return newWatchHandle(h, onEvent, opts?.onExit)
  }
}
