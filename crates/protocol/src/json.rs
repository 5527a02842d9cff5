//! serde helpers for the proto3 JSON mapping: `bytes` as base64, `int64` as a string,
//! enums as their names (numbers accepted too), `Timestamp` as RFC 3339.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;
use std::fmt;

/// `bytes` fields: standard base64 on output; standard or URL-safe, padded or not, on input.
pub mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: Option<String> = serde::Deserialize::deserialize(d)?;
        let Some(text) = text else { return Ok(Vec::new()) };
        decode(&text).map_err(de::Error::custom)
    }

    /// Decodes base64 in either alphabet, with or without padding.
    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        let normalized: String = text
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(normalized.as_bytes())
            .map_err(|e| format!("invalid base64: {e}"))
    }
}

/// `int64`/`uint64` fields: written as a JSON string, read from a string or a number.
pub mod i64_str {
    use super::*;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = i64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an int64 as a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
                if v.fract() == 0.0 && v.abs() < 9.2e18 {
                    Ok(v as i64)
                } else {
                    Err(E::custom(format!("{v} is not an integer")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
                v.parse().map_err(|_| E::custom(format!("{v:?} is not an int64")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
                Ok(0)
            }
        }
        d.deserialize_any(V)
    }
}

/// A protobuf enum that knows its names, for the JSON mapping.
pub trait ProtoEnum: Sized + Copy + Into<i32> + TryFrom<i32> {
    fn name_of(value: i32) -> Option<&'static str>;
    fn value_of(name: &str) -> Option<i32>;
}

/// Serializes an enum field stored as `i32` by name; reads a name or a number.
pub fn ser_enum<E: ProtoEnum, S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    match E::name_of(*v) {
        Some(name) => s.serialize_str(name),
        None => s.serialize_i32(*v),
    }
}

pub fn de_enum<'de, E: ProtoEnum, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    struct V<E>(std::marker::PhantomData<E>);
    impl<E: ProtoEnum> Visitor<'_> for V<E> {
        type Value = i32;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an enum name or number")
        }
        fn visit_i64<Er: de::Error>(self, v: i64) -> Result<i32, Er> {
            i32::try_from(v).map_err(Er::custom)
        }
        fn visit_u64<Er: de::Error>(self, v: u64) -> Result<i32, Er> {
            i32::try_from(v).map_err(Er::custom)
        }
        fn visit_str<Er: de::Error>(self, v: &str) -> Result<i32, Er> {
            E::value_of(v).ok_or_else(|| Er::custom(format!("unknown enum value {v:?}")))
        }
        fn visit_unit<Er: de::Error>(self) -> Result<i32, Er> {
            Ok(0)
        }
    }
    d.deserialize_any(V::<E>(std::marker::PhantomData))
}

/// Implements [`ProtoEnum`] for a prost enumeration (which has `as_str_name`/`from_str_name`).
#[macro_export]
macro_rules! proto_enum {
    ($t:ty) => {
        impl $crate::json::ProtoEnum for $t {
            fn name_of(value: i32) -> Option<&'static str> {
                <$t>::try_from(value).ok().map(|e| e.as_str_name())
            }
            fn value_of(name: &str) -> Option<i32> {
                <$t>::from_str_name(name).map(|e| e as i32)
            }
        }
    };
}

/// `google.protobuf.Timestamp`: RFC 3339 in JSON, seconds + nanos in binary.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        let d = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d,
            Err(_) => return Self { seconds: 0, nanos: 0 },
        };
        Self { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let dt = chrono::DateTime::from_timestamp(self.seconds, self.nanos.max(0) as u32).unwrap_or_default();
        s.serialize_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let dt = chrono::DateTime::parse_from_rfc3339(&text).map_err(de::Error::custom)?;
        Ok(Self { seconds: dt.timestamp(), nanos: dt.timestamp_subsec_nanos() as i32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_both_alphabets_and_missing_padding() {
        assert_eq!(b64::decode("aGk=").unwrap(), b"hi");
        assert_eq!(b64::decode("aGk").unwrap(), b"hi");
        assert_eq!(b64::decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(b64::decode("a").is_err());
    }

    #[test]
    fn timestamp_round_trips_through_rfc3339() {
        let t = Timestamp { seconds: 1_700_000_000, nanos: 5_000_000 };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.005Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
