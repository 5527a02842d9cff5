// The same snapshot cases through E2B's published `e2b` SDK, plus what only it can do: name a
// snapshot (`createSnapshot({ name })`), see `names`, start a sandbox by that name.
import { Sandbox, SandboxError } from 'e2b'
import { snapshotSuite } from './snapshots.shared.mjs'

snapshotSuite({ label: 'e2b', Sandbox, SandboxError, canName: true })
