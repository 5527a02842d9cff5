// Paginators of listings: `Sandbox.list()` (SandboxPaginator) and `Sandbox.listSnapshots()`
// (SnapshotPaginator), over the addon's paginators. No request until the first `nextItems()`.
import type { SandboxApiOpts } from './connection'
import { call, callSync, NativeSandbox, type SnapshotInfoJs } from './internal/native'
import { listedSandboxInfo, opt, snapshotInfo } from './internal/values'
import type { SandboxInfo, SandboxState, SnapshotInfo } from './sandbox'

/** Options of `Sandbox.list()`. */
export interface SandboxListOpts extends SandboxApiOpts {
  query?: {
    /** Only sandboxes with all these metadata pairs. */
    metadata?: Record<string, string>
    /** Only sandboxes in these states. */
    state?: SandboxState[]
  }
  /** Page size (server default 100). */
  limit?: number
  /** Start from this page token. */
  nextToken?: string
}

/**
 * Options of `Sandbox.listSnapshots()`. The filters are applied by the server; expired
 * snapshots are never listed.
 */
export interface SnapshotListOpts extends SandboxApiOpts {
  /** Only snapshots of this sandbox. */
  sandboxId?: string
  /** Only the snapshot with this name (a `:tag` is ignored), as e2b's. */
  name?: string
  /** Only snapshots with all these metadata pairs (sandbank's local server). */
  metadata?: Record<string, string>
  /** Page size (server default 100). */
  limit?: number
  nextToken?: string
}

/**
 * @internal The pages of a listing, as the paginator reads them. The addon's paginators
 * (`NativeSandboxPaginator`, `NativeSnapshotPaginator`) are pages of its own items.
 */
export interface Pages<T> {
  readonly hasNext: boolean
  readonly nextToken: string | null
  nextItems(): Promise<T[]>
}

/** A native paginator with each item of its pages converted by `convert`. */
function converted<N, T>(native: Pages<N>, convert: (item: N) => T): Pages<T> {
  return {
    get hasNext() {
      return native.hasNext
    },
    get nextToken() {
      return native.nextToken
    },
    nextItems: async () => (await native.nextItems()).map(convert),
  }
}

/** Pages of items; `for await` goes over every item of every remaining page. */
export abstract class BasePaginator<T> implements AsyncIterable<T> {
  readonly #native: Pages<T>

  /**
   * @internal The addon's paginator: it makes no request until `nextItems()` (and with nothing
   * configured, finds or starts the local engine then).
   */
  constructor(native: Pages<T>) {
    this.#native = native
  }

  /** `true` while there may be more items (initially `true`). */
  get hasNext(): boolean {
    return this.#native.hasNext
  }

  /** The token of the next page, if any. */
  get nextToken(): string | undefined {
    return opt(this.#native.nextToken)
  }

  /**
   * Fetches the next page.
   * @throws Error `No more items to fetch` once `hasNext` is `false`.
   */
  async nextItems(): Promise<T[]> {
    if (!this.hasNext) throw new Error('No more items to fetch')
    return call(this.#native.nextItems())
  }

  /** Every item of every remaining page: `for await (const item of paginator)`. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    while (this.hasNext) {
      for (const item of await this.nextItems()) yield item
    }
  }
}

/** Pages of sandboxes. */
export class SandboxPaginator extends BasePaginator<SandboxInfo> {
  constructor(opts?: SandboxListOpts) {
    const query = { metadata: opts?.query?.metadata, state: opts?.query?.state, limit: opts?.limit, nextToken: opts?.nextToken }
    super(converted(callSync(() => NativeSandbox.listSandboxes(query, opts)), listedSandboxInfo))
  }
}

/** @internal Pages of snapshots from the addon's paginator (a sandbox's own listing). */
export let snapshotPages: (native: Pages<SnapshotInfoJs>) => SnapshotPaginator

/** Pages of snapshots, newest first. */
export class SnapshotPaginator extends BasePaginator<SnapshotInfo> {
  /** The addon's paginator `snapshotPages` hands to the constructor (whose signature stays public). */
  static #adopting: Pages<SnapshotInfoJs> | undefined

  constructor(opts?: SnapshotListOpts) {
    const query = { sandboxId: opts?.sandboxId, name: opts?.name, metadata: opts?.metadata, limit: opts?.limit, nextToken: opts?.nextToken }
    super(converted(SnapshotPaginator.#adopting ?? callSync(() => NativeSandbox.listAllSnapshots(query, opts)), snapshotInfo))
  }

  static {
    snapshotPages = (native) => {
      SnapshotPaginator.#adopting = native
      try {
        return new SnapshotPaginator()
      } finally {
        SnapshotPaginator.#adopting = undefined
      }
    }
  }
}
