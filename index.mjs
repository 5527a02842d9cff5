// ESM entry: the same objects as the CommonJS entry (dist/index.js, compiled from js/; no
// dual-package hazard), with `Sandbox` as the default export, as in novita-sandbox.
import sandbank from './dist/index.js'

export const {
  Sandbox,
  SandboxPaginator,
  SnapshotPaginator,
  Commands,
  CommandHandle,
  Filesystem,
  FileType,
  FilesystemEventType,
  WatchHandle,
  Pty,
  getSignature,
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
  version,
  serverBinaryPath,
} = sandbank

export default sandbank.Sandbox
