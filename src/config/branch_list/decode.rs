//! Bytes of a text branch list → text, whatever Excel or LibreOffice saved: UTF-8 with or
//! without a BOM, UTF-16 (Excel's "Unicode text"), else Windows-1252 (Excel's "CSV" in a
//! French locale). The encoding used is always named, so a user can tell a misread file.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};

/// The text and the name of the encoding it was read in.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some((encoding, bom)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        let name = if encoding == UTF_8 {
            "UTF-8 (BOM)"
        } else if encoding == UTF_16LE {
            "UTF-16LE"
        } else {
            "UTF-16BE"
        };
        return (text.into_owned(), name);
    }
    if let Some(encoding) = utf16_without_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(bytes);
        let name = if encoding == UTF_16LE {
            "UTF-16LE"
        } else {
            "UTF-16BE"
        };
        return (text.into_owned(), name);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), "UTF-8"),
        Err(_) => {
            // Every byte has a meaning in Windows-1252 (the five undefined ones map to C1
            // controls), so this never fails: the worst case is a visible mojibake.
            let (text, _) = WINDOWS_1252.decode_without_bom_handling(bytes);
            (text.into_owned(), "Windows-1252")
        }
    }
}

/// UTF-16 saved without a BOM: ASCII headers leave a zero byte in every other position.
fn utf16_without_bom(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(64) & !1];
    if head.len() < 4 {
        return None;
    }
    let pairs = head.len() / 2;
    let zeros_at = |odd: usize| {
        head.iter()
            .skip(odd)
            .step_by(2)
            .filter(|b| **b == 0)
            .count()
    };
    if zeros_at(1) == pairs && zeros_at(0) == 0 {
        Some(UTF_16LE)
    } else if zeros_at(0) == pairs && zeros_at(1) == 0 {
        Some(UTF_16BE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_is_used_only_when_the_bytes_are_not_utf8() {
        assert_eq!(decode(b"R\xe9seau"), ("Réseau".to_owned(), "Windows-1252"));
        assert_eq!(decode("Réseau".as_bytes()), ("Réseau".to_owned(), "UTF-8"));
        assert_eq!(
            decode(b"\xef\xbb\xbfR\xc3\xa9seau"),
            ("Réseau".to_owned(), "UTF-8 (BOM)")
        );
    }

    #[test]
    fn utf16_is_read_with_or_without_its_bom() {
        let le: Vec<u8> = "id\tnom"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(decode(&le), ("id\tnom".to_owned(), "UTF-16LE"));
        let with_bom = [&[0xff, 0xfe][..], &le].concat();
        assert_eq!(decode(&with_bom), ("id\tnom".to_owned(), "UTF-16LE"));
    }
}
