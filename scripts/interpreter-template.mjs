#!/usr/bin/env node
// The code interpreter's template for the tests: `code-interpreter-v1` takes minutes to build
// (pip installs), longer than an SDK request waits, so the tests keep one built copy in a data
// dir of their own beside the base image cache and start the interpreter test's server on it.
//   node scripts/interpreter-template.mjs    builds it there if it is not yet (`npm test` does)
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sandbankBinary, startLocalServer } from './local-server.mjs'

/** Where the built template is kept: beside the base images (SANDBANK_IMAGES_DIR). */
export function interpreterDataDir() {
  if (process.env.SANDBANK_INTERPRETER_DATA_DIR) return process.env.SANDBANK_INTERPRETER_DATA_DIR
  const images = process.env.SANDBANK_IMAGES_DIR
  if (!images) throw new Error('set SANDBANK_IMAGES_DIR (or SANDBANK_INTERPRETER_DATA_DIR): the interpreter template is kept beside the base images')
  return join(dirname(resolve(images)), 'interpreter-data')
}

/** Starts a server on the interpreter's data dir and runs `sandbank templates prepare` on it. */
export async function prepare() {
  const dataDir = interpreterDataDir()
  mkdirSync(dataDir, { recursive: true, mode: 0o755 })
  const server = await startLocalServer({ dataDir, onStderr: process.env.SANDBANK_TEST_VERBOSE ? (d) => process.stderr.write(d) : undefined })
  try {
    const t0 = Date.now()
    const r = spawnSync(sandbankBinary(), ['templates', 'prepare', 'code-interpreter'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, SANDBANK_URL: server.url, SANDBANK_API_KEY: server.apiKey },
    })
    if (r.status !== 0) throw new Error(`sandbank templates prepare code-interpreter failed (${r.error?.message ?? r.status ?? r.signal})`)
    console.log(`code-interpreter-v1 ready in ${dataDir} (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
  } finally {
    await server.stop()
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  prepare().catch((e) => {
    console.error(e.message)
    process.exit(1)
  })
}
