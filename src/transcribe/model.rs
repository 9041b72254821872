//! The whisper.cpp model file, checked before whisper.cpp reads it.
//!
//! whisper.cpp trusts the sizes a model file declares; a truncated download or a file of
//! another format could make it read past the end or allocate without bound. So the file's
//! whole layout (header, mel filters, vocabulary, every tensor's size) is walked here first,
//! and only a file that ends exactly where its last tensor does is handed over.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

const GGML_MAGIC: u32 = 0x6767_6d6c;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// tiny, base, small, medium or large (from the encoder's depth).
    pub size: &'static str,
    pub multilingual: bool,
    pub tensors: usize,
    pub bytes: u64,
}

/// Why a model file cannot be used; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("no model at {0} (scripts/fetch-model installs one)")]
    Missing(String),
    #[error("model {path}: {why}")]
    Invalid { path: String, why: String },
}

pub fn check(path: &Path) -> Result<ModelInfo, ModelError> {
    let shown = path.display().to_string();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::Missing(shown))
        }
        Err(e) => {
            return Err(ModelError::Invalid {
                path: shown,
                why: format!("cannot be read: {e}"),
            })
        }
    };
    walk(file).map_err(|why| ModelError::Invalid { path: shown, why })
}

fn walk(file: File) -> Result<ModelInfo, String> {
    let bytes = file.metadata().map_err(|e| e.to_string())?.len();
    let mut r = BufReader::new(file);
    let magic = rd(&mut r, "header")? as u32;
    if magic != GGML_MAGIC {
        return Err(format!(
            "not a whisper.cpp ggml model (magic {magic:#010x}, expected {GGML_MAGIC:#010x})"
        ));
    }
    let mut h = [0i32; 11];
    for v in &mut h {
        *v = rd(&mut r, "header")?;
    }
    let [n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype] =
        h;
    let sane = |v: i32, max: i32| (1..=max).contains(&v);
    if !(sane(n_vocab, 1 << 20)
        && sane(n_audio_ctx, 1 << 16)
        && sane(n_audio_state, 1 << 16)
        && sane(n_audio_head, 1024)
        && sane(n_audio_layer, 1024)
        && sane(n_text_ctx, 1 << 16)
        && sane(n_text_state, 1 << 16)
        && sane(n_text_head, 1024)
        && sane(n_text_layer, 1024)
        && sane(n_mels, 1024)
        && (0..=1 << 20).contains(&ftype))
    {
        return Err(format!("implausible hyper-parameters {h:?}"));
    }
    let n_mel = rd(&mut r, "mel filters")?;
    let n_fft = rd(&mut r, "mel filters")?;
    if !(sane(n_mel, 1024) && sane(n_fft, 1 << 16)) {
        return Err(format!("implausible mel filter shape {n_mel}×{n_fft}"));
    }
    skip(
        &mut r,
        4 * i64::from(n_mel) * i64::from(n_fft),
        bytes,
        "mel filters",
    )?;
    let words = rd(&mut r, "vocabulary")?;
    if !(0..=n_vocab).contains(&words) {
        return Err(format!("{words} vocabulary entries for {n_vocab} tokens"));
    }
    for _ in 0..words {
        let len = r
            .read_i32()
            .map_err(|_| "truncated in the vocabulary".to_string())?;
        if !(0..=1024).contains(&len) {
            return Err(format!("vocabulary entry of {len} bytes"));
        }
        skip(&mut r, i64::from(len), bytes, "vocabulary")?;
    }
    let mut tensors = 0usize;
    loop {
        let at = r.stream_position().map_err(|e| e.to_string())?;
        if at == bytes {
            break;
        }
        let n_dims = r
            .read_i32()
            .map_err(|_| format!("truncated tensor header at byte {at}"))?;
        let name_len = r
            .read_i32()
            .map_err(|_| format!("truncated tensor header at byte {at}"))?;
        let ttype = r
            .read_i32()
            .map_err(|_| format!("truncated tensor header at byte {at}"))?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(format!(
                "bad tensor header at byte {at} ({n_dims} dims, name of {name_len} bytes)"
            ));
        }
        let mut elements: i64 = 1;
        for _ in 0..n_dims {
            let d = r
                .read_i32()
                .map_err(|_| format!("truncated tensor header at byte {at}"))?;
            if d < 1 {
                return Err(format!("tensor at byte {at} has a dimension of {d}"));
            }
            elements = elements.saturating_mul(i64::from(d));
        }
        let mut name = vec![0u8; name_len as usize];
        r.read_exact(&mut name)
            .map_err(|_| format!("truncated tensor name at byte {at}"))?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let (block, block_bytes) =
            tensor_type(ttype).ok_or_else(|| format!("tensor {name}: unknown type {ttype}"))?;
        if elements % block != 0 {
            return Err(format!(
                "tensor {name}: {elements} values do not fill its blocks"
            ));
        }
        skip(
            &mut r,
            elements / block * block_bytes,
            bytes,
            &format!("tensor {name}"),
        )?;
        tensors += 1;
    }
    if tensors == 0 {
        return Err("no tensors".into());
    }
    let size = match n_audio_layer {
        4 => "tiny",
        6 => "base",
        12 => "small",
        24 => "medium",
        32 => "large",
        _ => "unknown size",
    };
    Ok(ModelInfo {
        size,
        multilingual: n_vocab >= 51865,
        tensors,
        bytes,
    })
}

/// Values per block and bytes per block of a ggml tensor type (the ones whisper.cpp models use).
fn tensor_type(t: i32) -> Option<(i64, i64)> {
    Some(match t {
        0 => (1, 4),   // f32
        1 => (1, 2),   // f16
        2 => (32, 18), // q4_0
        3 => (32, 20), // q4_1
        6 => (32, 22), // q5_0
        7 => (32, 24), // q5_1
        8 => (32, 34), // q8_0
        _ => return None,
    })
}

fn rd(r: &mut BufReader<File>, what: &str) -> Result<i32, String> {
    r.read_i32().map_err(|_| format!("truncated in the {what}"))
}

fn skip(r: &mut BufReader<File>, n: i64, total: u64, what: &str) -> Result<(), String> {
    let at = r.stream_position().map_err(|e| e.to_string())?;
    if n < 0 || at.saturating_add(n as u64) > total {
        return Err(format!("truncated in the {what} (file of {total} bytes)"));
    }
    r.seek(SeekFrom::Current(n)).map_err(|e| e.to_string())?;
    Ok(())
}

trait ReadI32 {
    fn read_i32(&mut self) -> std::io::Result<i32>;
}

impl<R: Read> ReadI32 for R {
    fn read_i32(&mut self) -> std::io::Result<i32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(i32::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    /// A tiny but complete model layout: one f32 tensor of 2×3.
    fn tiny() -> Vec<u8> {
        let mut b = Vec::new();
        let mut i = |v: i32| b.extend_from_slice(&v.to_le_bytes());
        i(GGML_MAGIC as i32);
        for v in [51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1] {
            i(v);
        }
        i(1);
        i(2);
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend_from_slice(&2i32.to_le_bytes());
        b.extend_from_slice(b"hi");
        for v in [2i32, 1, 0, 3, 2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(b'w');
        b.extend_from_slice(&[0u8; 24]);
        b
    }

    #[test]
    fn a_complete_layout_passes_and_says_what_it_is() {
        let f = write(&tiny());
        let info = check(f.path()).unwrap();
        assert_eq!(
            (info.size, info.multilingual, info.tensors),
            ("base", true, 1)
        );
    }

    #[test]
    fn missing_truncated_and_foreign_files_are_refused_with_the_reason() {
        assert!(matches!(
            check(Path::new("/nonexistent/ggml.bin")),
            Err(ModelError::Missing(_))
        ));
        let full = tiny();
        for cut in [0, 3, 20, 60, full.len() - 1] {
            let f = write(&full[..cut]);
            let e = check(f.path()).unwrap_err().to_string();
            assert!(
                e.contains("truncated") || e.contains("magic"),
                "cut {cut}: {e}"
            );
        }
        let mut longer = full.clone();
        longer.extend_from_slice(&[1, 2, 3]);
        assert!(check(write(&longer).path()).is_err());
        let ct2 = write(b"\x06\x00\x00\x00\x0c\x00WhisperSpec\x00");
        let e = check(ct2.path()).unwrap_err().to_string();
        assert!(e.contains("not a whisper.cpp ggml model"), "{e}");
        let mut huge = full;
        huge[4..8].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(check(write(&huge).path())
            .unwrap_err()
            .to_string()
            .contains("implausible"));
    }
}
