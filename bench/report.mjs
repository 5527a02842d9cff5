// docs/BENCHMARKS.md is written by several benches, each owning a section marked
// `<!-- BEGIN <key> -->` … `<!-- END <key> -->`.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'

/** Replaces the `key` section of the report, or appends it; other sections stay as they are. */
export function upsertSection(file, key, body) {
  const begin = `<!-- BEGIN ${key} -->`
  const end = `<!-- END ${key} -->`
  const block = `${begin}\n${body.trim()}\n${end}\n`
  let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n'
  const i = doc.indexOf(begin)
  const j = doc.indexOf(end)
  if (i >= 0 && j > i) doc = doc.slice(0, i) + block + doc.slice(j + end.length).replace(/^\n/, '')
  else doc = `${doc.trimEnd()}\n\n${block}`
  writeFileSync(file, doc)
}
