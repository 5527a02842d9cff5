//! The Connect protocol as envd speaks it: error codes, the streaming envelope, the
//! end-of-stream message. <https://connectrpc.com/docs/protocol>

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Envelope flag: the payload is compressed (rejected by the SDK; never sent).
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Envelope flag: the end-of-stream message.
pub const FLAG_END_STREAM: u8 = 0x02;
/// The largest envelope accepted from a peer.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Connect error codes, with their wire names and the HTTP status of a unary error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    pub fn from_str_name(name: &str) -> Option<Self> {
        Some(match name {
            "canceled" => Code::Canceled,
            "unknown" => Code::Unknown,
            "invalid_argument" => Code::InvalidArgument,
            "deadline_exceeded" => Code::DeadlineExceeded,
            "not_found" => Code::NotFound,
            "already_exists" => Code::AlreadyExists,
            "permission_denied" => Code::PermissionDenied,
            "resource_exhausted" => Code::ResourceExhausted,
            "failed_precondition" => Code::FailedPrecondition,
            "aborted" => Code::Aborted,
            "out_of_range" => Code::OutOfRange,
            "unimplemented" => Code::Unimplemented,
            "internal" => Code::Internal,
            "unavailable" => Code::Unavailable,
            "data_loss" => Code::DataLoss,
            "unauthenticated" => Code::Unauthenticated,
            _ => return None,
        })
    }

    /// The HTTP status of a unary error response with this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Canceled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unauthenticated => 401,
        }
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Code::from_str_name(&name).unwrap_or(Code::Unknown))
    }
}

/// A Connect error: the body of a unary error response, and the `error` of an end-of-stream
/// message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("[{}] {message}", code.as_str())]
pub struct ConnectError {
    pub code: Code,
    #[serde(default)]
    pub message: String,
}

impl ConnectError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The end-of-stream message: `{}` on success, `{"error":{…}}` on failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ConnectError>,
}

/// One envelope: a flag byte, a 4-byte big-endian length, the payload.
pub fn encode_envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u8(flags);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

/// The end-of-stream envelope for `result` (always JSON, as the Connect protocol requires).
pub fn end_stream_envelope(error: Option<ConnectError>) -> Bytes {
    let json = serde_json::to_vec(&EndStream { error }).expect("end-stream serializes");
    encode_envelope(FLAG_END_STREAM, &json)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub flags: u8,
    pub payload: Bytes,
}

impl Envelope {
    pub fn is_end_stream(&self) -> bool {
        self.flags & FLAG_END_STREAM != 0
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("Connect envelope truncated: {have} of {need} bytes")]
    Truncated { have: usize, need: usize },
    #[error("Connect envelope of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(usize),
    #[error("compressed Connect envelopes are not supported")]
    Compressed,
}

/// Incremental envelope decoder: feed bytes as they arrive, take whole envelopes out.
#[derive(Debug, Default)]
pub struct EnvelopeDecoder {
    buf: BytesMut,
}

impl EnvelopeDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole envelope, or `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Envelope>, EnvelopeError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let flags = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE_BYTES {
            return Err(EnvelopeError::TooLarge(len));
        }
        if flags & FLAG_COMPRESSED != 0 {
            return Err(EnvelopeError::Compressed);
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let payload = self.buf.split_to(len).freeze();
        Ok(Some(Envelope { flags, payload }))
    }

    /// Call when the input has ended: an error if a partial envelope is left over.
    pub fn finish(&self) -> Result<(), EnvelopeError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let need = if self.buf.len() < 5 {
            5
        } else {
            5 + u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize
        };
        Err(EnvelopeError::Truncated { have: self.buf.len(), need })
    }
}

/// Decodes a request body that must hold exactly one message envelope (a server-streaming
/// request).
pub fn decode_single_envelope(body: &[u8]) -> Result<Bytes, EnvelopeError> {
    let mut dec = EnvelopeDecoder::default();
    dec.push(body);
    match dec.next()? {
        Some(env) => {
            dec.finish()?;
            Ok(env.payload)
        }
        None => Err(dec.finish().err().unwrap_or(EnvelopeError::Truncated { have: 0, need: 5 })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_across_split_reads() {
        let a = encode_envelope(0, b"{\"a\":1}");
        let b = end_stream_envelope(None);
        let all = [a.as_ref(), b.as_ref()].concat();
        let mut dec = EnvelopeDecoder::default();
        let mut got = Vec::new();
        for chunk in all.chunks(3) {
            dec.push(chunk);
            while let Some(env) = dec.next().unwrap() {
                got.push(env);
            }
        }
        dec.finish().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0].payload[..], b"{\"a\":1}");
        assert!(got[1].is_end_stream());
        assert_eq!(&got[1].payload[..], b"{}");
    }

    #[test]
    fn truncated_and_oversized_envelopes_are_errors() {
        let env = encode_envelope(0, b"hello");
        assert_eq!(decode_single_envelope(&env[..7]), Err(EnvelopeError::Truncated { have: 7, need: 10 }));
        assert_eq!(decode_single_envelope(&[0, 0]), Err(EnvelopeError::Truncated { have: 2, need: 5 }));
        assert_eq!(
            decode_single_envelope(&[0, 0xff, 0xff, 0xff, 0xff]),
            Err(EnvelopeError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(decode_single_envelope(&encode_envelope(FLAG_COMPRESSED, b"x")), Err(EnvelopeError::Compressed));
        assert_eq!(&decode_single_envelope(&env).unwrap()[..], b"hello");
    }

    #[test]
    fn end_stream_carries_the_error() {
        let env = end_stream_envelope(Some(ConnectError::new(Code::DeadlineExceeded, "too slow")));
        assert_eq!(env[0], FLAG_END_STREAM);
        assert_eq!(&env[5..], br#"{"error":{"code":"deadline_exceeded","message":"too slow"}}"#);
    }
}
