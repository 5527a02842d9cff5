// Snapshots through the published `novita-sandbox` SDK against a real `sandbank serve`: the
// product docs' flow (create, write, createSnapshot, start from it, list, delete), chains, what a
// snapshot captures, and a restart. The cases live in `snapshots.shared.mjs` (shared with e2b).
import { Sandbox, SandboxError } from 'novita-sandbox'
import { snapshotSuite } from './snapshots.shared.mjs'

snapshotSuite({ label: 'novita', Sandbox, SandboxError, canName: false })
