// The native addon: the repository root's generated napi loader (`binding.js`), typed by its
// generated `binding.d.ts`, told once where the local engine's binary is; and the wrappers that
// turn its `[Kind] message` rejections into the error classes. Connection options go to it as the
// caller gave them: the addon merges them and fills in the local default.
import binding = require('../../binding.js')
import { mapError } from '../errors'
import { missingBinaryHint, packagedBinaryPath } from './binary'

binding.useLocalEngine(packagedBinaryPath(), missingBinaryHint())

export type {
  BuildInfoJs,
  BuildStatusJs,
  CloneOptions,
  CommandOptions,
  CommandResultJs,
  ConnectionOptions,
  CreateSnapshotOptions,
  EntryInfoJs,
  ForkEntry,
  ForkOptions,
  FsOptions,
  MetricsOptions,
  NativeCommandHandle,
  NativeCommands,
  NativeFiles,
  NativePty,
  NativeWatchHandle,
  SandboxInfoJs,
  SandboxMetricsJs,
  SandboxOptions,
  SnapshotInfoJs,
  TemplateBuildOptions,
  UrlOptions,
  WriteInfoJs,
} from '../../binding.js'

/** The addon's sandbox class: its statics are the calls by sandbox ID. */
export const NativeSandbox = binding.NativeSandbox
export type NativeSandbox = binding.NativeSandbox

/** A template build under way (its log, then its outcome), and the other template calls. */
export const NativeTemplateBuild = binding.NativeTemplateBuild
export type NativeTemplateBuild = binding.NativeTemplateBuild
export const {
  templateFilesHash,
  checkCopySource,
  parseDockerfile,
  getTemplateBuildStatus,
  templateExists,
  assignTemplateTags,
  removeTemplateTags,
  getTemplateTags,
} = binding

/** The signature of a `/files` URL (`getSignature`). */
export const getFileSignature = binding.getFileSignature

/** The version of the addon (the Rust crate's). */
export const addonVersion = binding.version

/** Awaits a native call; its rejection becomes the matching error class. */
export async function call<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise
  } catch (e) {
    throw mapError(e)
  }
}

/** Runs a synchronous native call; what it throws becomes the matching error class. */
export function callSync<T>(fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    throw mapError(e)
  }
}
