//! Wire types and codecs of the Novita/E2B sandbox API, shared by sandbank's client and server.
//!
//! - [`rest`]: the control plane's JSON bodies (`POST /sandboxes`, …) and the error body.
//! - [`body`]: parsing a request body into one of them, with errors that name the field.
//! - [`connect`]: the Connect protocol: envelopes, end-of-stream messages, error codes.
//! - [`process`], [`filesystem`]: envd's messages, encodable as proto3 JSON (serde) and as
//!   binary protobuf (prost) from one definition.
//! - [`pagination`]: the keyset cursor carried in `X-Next-Token`.
//! - [`guest`]: the engine↔guest handshake on the guest's stdin and stdout, and the guest's config.
//! - [`metadata`]: the SDK's triple-encoded metadata filter.

#![deny(unsafe_code)]

pub mod body;
pub mod connect;
pub mod filesystem;
pub mod guest;
pub mod json;
pub mod metadata;
pub mod pagination;
pub mod process;
pub mod rest;

/// The envd version the local engine advertises: high enough for every feature gate of the
/// published SDKs (octet-stream upload needs 0.5.7, file metadata 0.6.2, `includeEntry` in watch
/// events 0.6.3, `allowNetworkMounts` 0.6.4).
pub const ENVD_VERSION: &str = "0.6.4";

/// The port envd listens on in a cloud sandbox; part of envd host names (`49983-<id>.<domain>`).
pub const ENVD_PORT: u16 = 49983;

/// envd's route to a sandbox port (`{PORT_TUNNEL_PREFIX}<port>`, a `GET` with `Upgrade:
/// PORT_TUNNEL_PROTOCOL`): envd connects to the port on the sandbox's loopback and, once it is
/// connected, answers 101 and carries the bytes both ways; 502 when nothing listens there. The
/// server's port forwarder reaches sandbox ports through it, never entering their network.
pub const PORT_TUNNEL_PREFIX: &str = "/sandbank/ports/";
pub const PORT_TUNNEL_PROTOCOL: &str = "sandbank-tcp";
