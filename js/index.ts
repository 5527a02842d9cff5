// The public entry of the `sandbank` package: the surface of novita-sandbox 2.1.1 (Sandbox,
// commands, files, snapshots, paginators, errors) and e2b's Template (builds), over the native
// addon (`binding.js`).
// The layer in TypeScript only shapes values: option bags → native arguments, native results →
// the objects novita-sandbox returns (Dates, optional keys), `[Kind] message` rejections → error
// classes, and pulled output → onStdout/onStderr callbacks.
//
// With no API key and no URL configured (options or NOVITA_*/E2B_* variables) every call uses the
// local engine: SANDBANK_URL (+ SANDBANK_API_KEY), else a running local daemon (found through
// `daemon.json` in $SANDBANK_DATA_DIR, $XDG_DATA_HOME/sandbank or ~/.local/share/sandbank), else a
// `sandbank serve` started in the background that stops by itself after 5 idle minutes
// (the addon's: crates/client/src/local.rs; internal/binary.ts says where the binary is).
import { addonVersion } from './internal/native'
import { Sandbox } from './sandbox'

export { Sandbox }
export default Sandbox
export { SandboxPaginator, SnapshotPaginator } from './paginator'
export { Commands, CommandHandle } from './commands'
export { Filesystem, FileType, FilesystemEventType, WatchHandle } from './filesystem'
export { Pty } from './pty'
export { getSignature } from './signature'
export { Template, TemplateBase } from './template'
export { ReadyCmd, waitForPort, waitForURL, waitForProcess, waitForFile, waitForTimeout } from './readycmd'
export { LogEntry, LogEntryStart, LogEntryEnd, defaultBuildLogger } from './logger'
export {
  SandboxError,
  TimeoutError,
  InvalidArgumentError,
  NotEnoughSpaceError,
  NotFoundError,
  FileNotFoundError,
  SandboxNotFoundError,
  AuthenticationError,
  TemplateError,
  RateLimitError,
  CommandExitError,
  BuildError,
  FileUploadError,
} from './errors'
export { serverBinaryPath } from './internal/binary'

export type { ConnectionOpts, SandboxApiOpts, Username } from './connection'
export type {
  CloneResult,
  CreateSnapshotOpts,
  SandboxBetaCreateOpts,
  SandboxCloneOpts,
  SandboxCloneResult,
  SandboxConnectOpts,
  SandboxForkOpts,
  SandboxInfo,
  SandboxInfoLifecycle,
  SandboxLifecycle,
  SandboxMetrics,
  SandboxMetricsOpts,
  SandboxOpts,
  SandboxState,
  SandboxUrlOpts,
  SnapshotArchiveOpts,
  SnapshotExportInfo,
  SnapshotInfo,
} from './sandbox'
export type { SandboxListOpts, SnapshotListOpts } from './paginator'
export type { CommandConnectOpts, CommandRequestOpts, CommandResult, CommandStartOpts, ProcessInfo } from './commands'
export type { PtyConnectOpts, PtyCreateOpts } from './pty'
export type {
  EntryInfo,
  FilesystemEvent,
  FilesystemListOpts,
  FilesystemReadOpts,
  FilesystemRequestOpts,
  FilesystemWriteOpts,
  WatchOpts,
  WriteEntry,
  WriteInfo,
} from './filesystem'
export type { SignatureOpts } from './signature'
export type {
  BasicBuildOptions,
  BuildInfo,
  BuildOptions,
  BuildStatusReason,
  CopyItem,
  GetBuildStatusOptions,
  McpServerName,
  PathLike,
  TemplateBuilder,
  TemplateBuildStatus,
  TemplateBuildStatusResponse,
  TemplateClass,
  TemplateFactory,
  TemplateFinal,
  TemplateFromImage,
  TemplateOptions,
  TemplateTag,
  TemplateTagInfo,
} from './template'
export type { LogEntryLevel } from './logger'

/** The version of the native addon (the Rust crate's version). */
export function version(): string {
  return addonVersion()
}
