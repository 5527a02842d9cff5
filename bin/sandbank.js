#!/usr/bin/env node
// `npx sandbank …`: runs the native `sandbank` binary with the same arguments.
// The binary is found via $SANDBANK_BIN, then <package>/native/sandbank (put there by `npm run build`).
// Signals are forwarded to it and its exit code (or signal) becomes ours.
'use strict'

const { spawn } = require('node:child_process')
const { existsSync } = require('node:fs')
const { join } = require('node:path')

function findBinary() {
  if (process.env.SANDBANK_BIN) {
    if (!existsSync(process.env.SANDBANK_BIN)) {
      console.error(`sandbank: SANDBANK_BIN=${process.env.SANDBANK_BIN} does not exist`)
      process.exit(127)
    }
    return process.env.SANDBANK_BIN
  }
  const bundled = join(__dirname, '..', 'native', 'sandbank')
  if (existsSync(bundled)) return bundled
  console.error(
    `sandbank: the native binary is missing (looked for ${bundled}).\n` +
      'Run `npm run build` in the sandbank package (needs Rust and cargo), or set SANDBANK_BIN to a built `sandbank` binary.',
  )
  process.exit(127)
}

const child = spawn(findBinary(), process.argv.slice(2), { stdio: 'inherit' })

const forwarded = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']
for (const sig of forwarded) {
  process.on(sig, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig)
  })
}

child.on('error', (err) => {
  console.error(`sandbank: cannot start ${child.spawnfile}: ${err.message}`)
  process.exit(127)
})

child.on('exit', (code, signal) => {
  if (signal) {
    // Die of the same signal so our parent sees what the binary saw.
    for (const sig of forwarded) process.removeAllListeners(sig)
    process.kill(process.pid, signal)
    // If the signal is ignored or caught elsewhere, fall back to the shell convention.
    setTimeout(() => process.exit(128 + (require('node:os').constants.signals[signal] ?? 0)), 100)
    return
  }
  process.exit(code ?? 1)
})
