//! Sandbox IDs: 20 characters of `[a-z0-9]`, as the cloud makes them.

use rand::Rng;

pub const ID_LEN: usize = 20;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

pub fn new_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Whether `s` could be an ID this engine made (also guards paths built from IDs).
pub fn is_valid(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_20_lowercase_alphanumerics() {
        for _ in 0..100 {
            let id = new_id();
            assert!(is_valid(&id), "{id}");
        }
        assert!(!is_valid("../../etc/passwd1234"));
        assert!(!is_valid("ABCDEFGHIJKLMNOPQRST"));
    }
}
