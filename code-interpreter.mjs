// ESM entry of `sandbank/code-interpreter`: the same objects as the CommonJS entry
// (dist/code-interpreter.js, compiled from js/code-interpreter.ts; no dual-package hazard): all of
// `sandbank`, with the interpreter's `Sandbox` (also the default export) and its classes.
import ci from './dist/code-interpreter.js'

// sandbank's own names from its entry (the same objects: both come from dist/); the
// interpreter's `Sandbox` shadows sandbank's.
export * from './index.mjs'
export const {
  Sandbox,
  OutputMessage,
  ExecutionError,
  Result,
  Execution,
  CodeInterpreterSandbox,
} = ci

export default ci.Sandbox
