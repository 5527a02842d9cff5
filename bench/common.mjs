// What the benches share: their command-line options, the percentile they report, and the
// server's `frozen_ms` log field.

/** The value after `--<name>` on the command line, else `dflt`. */
export function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : dflt
}

/** The `q`th percentile of `xs`, nearest rank. */
export function percentile(xs, q) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((q / 100) * s.length) - 1))]
}

/** The `frozen_ms` values in a chunk of the server's log (which may be coloured: escape
 * sequences around the `=`). */
export function frozenMsIn(chunk) {
  return [...String(chunk).matchAll(/frozen_ms(?:\x1b\[[0-9;]*m)*=(?:\x1b\[[0-9;]*m)*([0-9.]+)/g)].map((m) => Number(m[1]))
}
