//! The fuzz target of this vendor's gzipped NDJSON decoder (`cargo fuzz` target and regression corpus
//! `astronomer_ndjson`; the harness and what every page must satisfy: `crate::fuzzing`).

use std::io::Write as _;

use super::source as astronomer;
use crate::fuzzing::{check_record, check_rejected};
use crate::sources::DecodeError;

/// What one `decode` produced, for comparing two runs.
#[derive(Debug, PartialEq, Eq)]
struct Decoding {
    seen: Result<astronomer::Decoded, String>,
    keys: Vec<String>,
    rejected: Vec<String>,
}

fn decode(body: &[u8]) -> Decoding {
    let (mut keys, mut rejected_keys) = (Vec::new(), Vec::new());
    let (mut records, mut rejected, mut bytes) = (0usize, 0usize, 0usize);
    let seen = astronomer::decode(body, |chunk, bad| {
        let n = chunk.len() + bad.len();
        assert!(n > 0 && n <= astronomer::CHUNK, "a chunk of {n} lines");
        for r in &chunk {
            assert!(r.key.starts_with("sha256:") && r.key.len() == 7 + 64, "key {}", r.key);
            check_record(r);
            bytes += r.raw.get().len();
        }
        for r in &bad {
            check_rejected(r);
            assert!(!r.raw.is_empty() && r.raw.trim_ascii().len() == r.raw.len(), "a rejected line is not trimmed");
            bytes += r.raw.len();
        }
        records += chunk.len();
        rejected += bad.len();
        keys.extend(chunk.into_iter().map(|r| r.key));
        rejected_keys.extend(bad.into_iter().map(|r| r.key));
        true
    });
    // The cap holds: nothing past MAX_DECODED_BYTES was ever handed on.
    assert!(bytes <= astronomer::MAX_DECODED_BYTES, "{bytes} decoded bytes handed on");
    let seen = match seen {
        Ok(seen) => {
            assert_eq!((seen.records, seen.rejected), (records, rejected), "counts differ from what was emitted");
            Ok(seen)
        }
        Err(DecodeError::Stopped) => panic!("stopped although the receiver never asked to"),
        Err(e @ (DecodeError::Broken(_) | DecodeError::TooLarge(_))) => Err(e.to_string()),
    };
    Decoding { seen, keys, rejected: rejected_keys }
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

/// Astronomer: [`astronomer::decode`] over the bytes as they are (gzip is detected by the
/// decoder itself, so gzip-looking inputs fuzz the inflater) and, for plain NDJSON, the same
/// bytes gzipped here (same records expected), and a receiver that stops at once.
pub fn ndjson(data: &[u8]) {
    let plain = decode(data);
    if data.starts_with(&[0x1f, 0x8b]) {
        return;
    }
    // Plain NDJSON: a slice reads without error, and every line is a record, rejected or blank;
    // except a body that is no answer: an HTML page (its first line starts with `<`) or a body
    // cut inside its last line (unterminated and not JSON).
    let lines = data.split(|b| *b == b'\n').count() - usize::from(data.is_empty() || data.ends_with(b"\n"));
    let first = data.split(|b| *b == b'\n').map(<[u8]>::trim_ascii).find(|l| !l.is_empty());
    let last = data.rsplit(|b| *b == b'\n').next().map(<[u8]>::trim_ascii).unwrap_or_default();
    let cut =
        !data.ends_with(b"\n") && !last.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(last).is_err();
    let page = first.is_some_and(|l| l.starts_with(b"<"));
    match &plain.seen {
        Ok(seen) => assert_eq!(seen.records + seen.rejected + seen.blank, lines, "lines lost"),
        Err(e) => assert!(data.len() > astronomer::MAX_DECODED_BYTES || cut || page, "plain NDJSON failed: {e}"),
    }
    if let Some(gz) = gzip(data) {
        assert_eq!(decode(&gz), plain, "gzipped NDJSON decodes differently from the plain bytes");
    }
    let stopped = astronomer::decode(data, |_, _| false);
    match plain.seen {
        Ok(seen) if seen.records + seen.rejected > 0 => assert!(matches!(stopped, Err(DecodeError::Stopped))),
        Ok(_) => assert!(stopped.is_ok()),
        Err(_) => {}
    }
}
