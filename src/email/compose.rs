//! What makes a rendered enquiry a person's email: a human-looking reference code and our
//! Message-ID on the persona's domain. The templates themselves (subject, body, the refusal
//! of header injection) are `config::template`'s, so configuration checks never call up into
//! the email channel; they are re-exported here under their old paths.

use rand::Rng;

pub use crate::config::template::{compile_check, render, ComposeError, Rendered, VisitContext};

/// Reference codes avoid look-alike characters (0/O, 1/I/L) so a person can copy one by hand.
const REF_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A new reference code like `K7QM-4Z`: 31^6 ≈ 887 million values.
pub fn new_reference() -> String {
    let mut rng = rand::thread_rng();
    let mut pick = || REF_ALPHABET[rng.gen_range(0..REF_ALPHABET.len())] as char;
    let head: String = (0..4).map(|_| pick()).collect();
    let tail: String = (0..2).map(|_| pick()).collect();
    format!("{head}-{tail}")
}

/// A Message-ID as a mail client on the persona's domain would write it, without `<>`.
pub fn new_message_id(persona_email: &str) -> String {
    let domain = persona_email
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost");
    format!("{}@{}", uuid::Uuid::new_v4(), domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_message_ids_look_human_and_use_the_persona_domain() {
        let r = new_reference();
        assert_eq!(r.len(), 7);
        assert!(r
            .chars()
            .all(|c| c == '-' || REF_ALPHABET.contains(&(c as u8))));
        assert!(new_message_id("Claire@Robot.Test").ends_with("@robot.test"));
    }
}
