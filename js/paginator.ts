// Paginators of listings: `Sandbox.list()` (SandboxPaginator) and `Sandbox.listSnapshots()`
// (SnapshotPaginator), over the addon's paginators. No request until the first `nextItems()`.
import type { SandboxApiOpts } from './connection'
import { call, callSync, connection, NativeSandbox, type ConnectionOptions } from './internal/native'
import * as local from './internal/local'
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

/** Options of `Sandbox.listSnapshots()`. */
export interface SnapshotListOpts extends SandboxApiOpts {
  /** Only snapshots of this sandbox. */
  sandboxId?: string
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
  readonly #opts: (SandboxApiOpts & { nextToken?: string }) | undefined
  readonly #open: (conn: ConnectionOptions) => Pages<T>
  #native: Pages<T> | null = null

  /**
   * @internal `open` makes the native paginator for a connection: at once when `opts` configure
   * one, else (the local default) on the first `nextItems()`, once the local engine is up.
   */
  constructor(opts: (SandboxApiOpts & { nextToken?: string }) | undefined, open: (conn: ConnectionOptions) => Pages<T>) {
    this.#opts = opts
    this.#open = open
    if (local.isConfigured(opts)) this.#native = callSync(() => open(local.pickConnection(opts)))
  }

  /** `true` while there may be more items (initially `true`). */
  get hasNext(): boolean {
    return this.#native ? this.#native.hasNext : true
  }

  /** The token of the next page, if any. */
  get nextToken(): string | undefined {
    return this.#native ? opt(this.#native.nextToken) : this.#opts?.nextToken
  }

  /**
   * Fetches the next page.
   * @throws Error `No more items to fetch` once `hasNext` is `false`.
   */
  async nextItems(): Promise<T[]> {
    if (!this.hasNext) throw new Error('No more items to fetch')
    if (!this.#native) {
      const c = await connection(this.#opts)
      this.#native ??= callSync(() => this.#open(c))
    }
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
    super(opts, (c) =>
      converted(
        NativeSandbox.listSandboxes({ metadata: opts?.query?.metadata, state: opts?.query?.state, limit: opts?.limit, nextToken: opts?.nextToken }, c),
        listedSandboxInfo,
      ),
    )
  }
}

/** Pages of snapshots, newest first. */
export class SnapshotPaginator extends BasePaginator<SnapshotInfo> {
  constructor(opts?: SnapshotListOpts) {
    super(opts, (c) => converted(NativeSandbox.listAllSnapshots({ sandboxId: opts?.sandboxId, limit: opts?.limit, nextToken: opts?.nextToken }, c), snapshotInfo))
  }
}
