// The public entry of the `sandbank` package. For now the native addon only reports its version;
// the SDK (Sandbox, commands, files, snapshots, error classes) arrives with the SDK issue.
'use strict'

const { join } = require('node:path')
const binding = require('./binding.js')

/** The version of the native addon (the Rust crate's version). */
function version() {
  return binding.version()
}

/** Absolute path of the bundled `sandbank` server binary (`npm run build` puts it there). */
function serverBinaryPath() {
  return process.env.SANDBANK_BIN || join(__dirname, 'native', 'sandbank')
}

module.exports = { version, serverBinaryPath }
