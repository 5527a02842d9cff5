/** The version of the native addon (the Rust crate's version). */
export declare function version(): string

/**
 * Absolute path of the `sandbank` server binary: `$SANDBANK_BIN` when set, else the one
 * `npm run build` copies to `<package>/native/sandbank`.
 */
export declare function serverBinaryPath(): string
