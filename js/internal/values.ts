// Value shaping between the addon and the SDK's objects: native results → what novita-sandbox
// returns (Dates for epoch milliseconds, optional keys absent or `undefined` as it has them), and
// upload data of any accepted kind → a string or a Buffer.
import { types } from 'node:util'
import type { CommandResult } from '../commands'
import type { EntryInfo, FileType, WriteInfo } from '../filesystem'
import type { SandboxInfo, SandboxMetrics, SandboxState, SnapshotInfo } from '../sandbox'
import type { CommandResultJs, EntryInfoJs, SandboxInfoJs, SandboxMetricsJs, SnapshotInfoJs, WriteInfoJs } from './native'

/** Epoch milliseconds → a Date; none → `undefined`. */
export const date = (ms: number | null | undefined): Date | undefined => (ms === null || ms === undefined ? undefined : new Date(ms))

/** The addon's `null` (an absent value) → `undefined`. */
export const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v)

export function commandResult(r: CommandResultJs): CommandResult {
  return { exitCode: r.exitCode, error: opt(r.error), stdout: r.stdout, stderr: r.stderr }
}

export function sandboxInfo(i: SandboxInfoJs): SandboxInfo {
  return {
    sandboxId: i.sandboxId,
    templateId: i.templateId,
    ...(i.name && { name: i.name }),
    metadata: i.metadata ?? {},
    allowInternetAccess: opt(i.allowInternetAccess),
    envdVersion: i.envdVersion,
    startedAt: new Date(i.startedAt),
    endAt: new Date(i.endAt),
    state: i.state as SandboxState,
    cpuCount: i.cpuCount,
    memoryMB: i.memoryMb,
    network: undefined,
    lifecycle: i.lifecycle ? { onTimeout: i.lifecycle.onTimeout as 'pause' | 'kill', autoResume: i.lifecycle.autoResume } : undefined,
    volumeMounts: [],
    // Only when it is so: otherwise the info is the cloud SDK's, field for field.
    ...(i.rootIsHostRoot && { rootIsHostRoot: true }),
  }
}

/** A sandbox as `Sandbox.list()` gives it: fewer fields than `getInfo()`. */
export function listedSandboxInfo(i: SandboxInfoJs): SandboxInfo {
  return {
    sandboxId: i.sandboxId,
    templateId: i.templateId,
    ...(i.name && { name: i.name }),
    metadata: i.metadata ?? {},
    startedAt: new Date(i.startedAt),
    endAt: new Date(i.endAt),
    state: i.state as SandboxState,
    cpuCount: i.cpuCount,
    memoryMB: i.memoryMb,
    envdVersion: i.envdVersion,
    volumeMounts: [],
  }
}

/** Only the keys that have a value. */
export function snapshotInfo(s: SnapshotInfoJs): SnapshotInfo {
  const out: SnapshotInfo = { snapshotId: s.snapshotId }
  if (s.names && s.names.length) out.names = s.names
  if (s.sandboxId) out.sandboxId = s.sandboxId
  if (s.parentSnapshotId) out.parentSnapshotId = s.parentSnapshotId
  if (s.createdAt !== null && s.createdAt !== undefined) out.createdAt = new Date(s.createdAt)
  if (s.sizeBytes !== null && s.sizeBytes !== undefined) out.sizeBytes = s.sizeBytes
  if (s.mode) out.mode = s.mode
  if (s.metadata) out.metadata = { ...s.metadata }
  if (s.expiresAt !== null && s.expiresAt !== undefined) out.expiresAt = new Date(s.expiresAt)
  return out
}

export function entryInfo(e: EntryInfoJs): EntryInfo {
  return {
    name: e.name,
    type: opt(e.type) as FileType | undefined,
    path: e.path,
    size: e.size,
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    modifiedTime: date(e.modifiedTime),
    symlinkTarget: opt(e.symlinkTarget),
  }
}

export function writeInfo(w: WriteInfoJs): WriteInfo {
  return { name: w.name, type: opt(w.type) as FileType | undefined, path: w.path }
}

export function sandboxMetrics(m: SandboxMetricsJs): SandboxMetrics {
  return {
    timestamp: new Date(m.timestamp),
    cpuUsedPct: m.cpuUsedPct,
    cpuCount: m.cpuCount,
    memUsed: m.memUsed,
    memTotal: m.memTotal,
    diskUsed: m.diskUsed,
    diskTotal: m.diskTotal,
  }
}

// Type checks here avoid `instanceof`: under Jest, a test's ArrayBuffer or Blob comes from another
// realm than this module's globals.

/** Bytes for the native side without copying where possible. */
export function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (types.isAnyArrayBuffer(data)) return Buffer.from(data)
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  throw new TypeError('Expected a Uint8Array or an ArrayBuffer')
}

function isBlob(data: unknown): data is Blob {
  const d = data as Partial<Blob> | null | undefined
  return typeof d?.arrayBuffer === 'function' && typeof d?.size === 'number' && typeof d?.stream === 'function'
}

function isReadableStream(data: unknown): data is ReadableStream<unknown> {
  return typeof (data as Partial<ReadableStream> | null | undefined)?.getReader === 'function'
}

function isAsyncIterable(data: unknown): data is AsyncIterable<unknown> {
  return typeof (data as Partial<AsyncIterable<unknown>> | null | undefined)?.[Symbol.asyncIterator] === 'function'
}

/** string | ArrayBuffer | ArrayBufferView | Blob | ReadableStream | AsyncIterable → string | Buffer. */
export async function uploadData(data: unknown): Promise<string | Buffer> {
  if (typeof data === 'string') return data
  if (types.isAnyArrayBuffer(data) || ArrayBuffer.isView(data)) return toBuffer(data)
  if (isBlob(data)) return Buffer.from(await data.arrayBuffer())
  const chunks: Buffer[] = []
  if (data && isReadableStream(data)) {
    const reader = data.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(typeof value === 'string' ? Buffer.from(value) : toBuffer(value))
    }
    return Buffer.concat(chunks)
  }
  if (data && isAsyncIterable(data)) {
    for await (const value of data) chunks.push(typeof value === 'string' ? Buffer.from(value) : toBuffer(value))
    return Buffer.concat(chunks)
  }
  throw new TypeError('Unsupported data type: expected a string, ArrayBuffer, Blob or ReadableStream')
}
