// Where in the user's code a builder call was made: its stack from the first frame outside this
// package (for a failed step's BuildError), and that frame's directory (a template's default
// file context, as in e2b).
import { dirname, isAbsolute, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

/** This package's compiled files (`dist/`). */
const SDK_DIR = dirname(__dirname)

/** The file of a V8 stack line (`    at f (/x/y.js:1:2)`, `    at file:///x/y.mjs:1:2`). */
function frameFile(line: string): string | undefined {
  const m = /\((.+):\d+:\d+\)$/.exec(line) ?? /^\s*at (?:async )?(.+):\d+:\d+$/.exec(line)
  if (!m) return undefined
  try {
    return m[1].startsWith('file:') ? fileURLToPath(m[1]) : m[1]
  } catch {
    return undefined
  }
}

function isUserFile(file: string | undefined): file is string {
  if (!file || file.startsWith('node:') || file === 'native' || !isAbsolute(file)) return false
  const rel = relative(SDK_DIR, file)
  return rel.startsWith('..') || isAbsolute(rel)
}

/** The current stack's frames (`    at …` lines) from the first one in user code; none: `[]`. */
function userFrames(): string[] {
  const lines = (new Error().stack ?? '').split('\n').filter((l) => /^\s+at /.test(l))
  const first = lines.findIndex((l) => isUserFile(frameFile(l)))
  return first === -1 ? [] : lines.slice(first)
}

/** The user's stack at this call, as the body of an error's `stack` (`undefined` if none). */
export function callerStack(): string | undefined {
  const frames = userFrames()
  return frames.length > 0 ? frames.join('\n') : undefined
}

/** The directory of the user's file that made this call, if it can be told. */
export function callerDirectory(): string | undefined {
  const file = frameFile(userFrames()[0] ?? '')
  return file ? dirname(file) : undefined
}
