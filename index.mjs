// ESM entry: the same objects as the CommonJS entry (no dual-package hazard), with `Sandbox` as
// the default export, as in novita-sandbox.
import sandbank from './index.js'

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
