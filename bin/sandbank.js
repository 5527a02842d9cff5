#!/usr/bin/env node
// `npx sandbank …`: runs the native `sandbank` binary with the same arguments.
// The binary is found via $SANDBANK_BIN, then <package>/native/sandbank (put there by `npm run build`),
// then the platform package (`sandbank-linux-x64-gnu`, …) that npm installed.
// Signals are forwarded to it and its exit code (or signal) becomes ours.
'use strict'

const { spawn } = require('node:child_process')
const { existsSync } = require('node:fs')
const { serverBinaryPath, platformPackages } = require('../dist/internal/binary.js')

function findBinary() {
  if (process.env.SANDBANK_BIN) {
    if (!existsSync(process.env.SANDBANK_BIN)) {
      console.error(`sandbank: SANDBANK_BIN=${process.env.SANDBANK_BIN} does not exist`)
      process.exit(127)
    }
    return process.env.SANDBANK_BIN
  }
  // <package>/native/sandbank (a build from source), else the platform package's binary.
  const bin = serverBinaryPath()
  if (existsSync(bin)) return bin
  if (process.platform !== 'linux') {
    console.error(`sandbank: the native binary (the local engine) needs Linux; this is ${process.platform}-${process.arch}.`)
    process.exit(127)
  }
  console.error(
    `sandbank: the native binary is missing (looked for ${bin} and in ${platformPackages().join(', ')}).\n` +
      'Reinstall sandbank without --omit=optional, run `npm run build` in a checkout (needs Rust and cargo), or set SANDBANK_BIN to a built `sandbank` binary.',
  )
  process.exit(127)
}

// SANDBANK_LAUNCHER_PID: the binary stops (SIGTERM) when this process dies, however it dies.
const child = spawn(findBinary(), process.argv.slice(2), { stdio: 'inherit', env: { ...process.env, SANDBANK_LAUNCHER_PID: String(process.pid) } })

const forwarded = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']
for (const sig of forwarded) {
  process.on(sig, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig)
  })
}

// `npx` runs us through `sh -c`, and a SIGTERM to npx reaches the shell, not us: when our parent
// goes away (we are re-parented), stop the binary as if we had been sent SIGTERM ourselves.
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
}, 250).unref()

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
