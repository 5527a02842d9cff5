import { defineConfig } from 'vitest/config'

export default defineConfig({
  // This example depends on the repository checkout (`file:../..`, a symlink). Keeping the
  // symlinked path makes Vitest treat `sandbank` as what it is for users, a package in
  // node_modules that Node loads itself (not source to transform). An app that installs
  // sandbank from npm needs no such line.
  resolve: { preserveSymlinks: true },
  test: {
    testTimeout: 60_000,
  },
})
