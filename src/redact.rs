//! Masking of secrets in text bound for logs, error messages and panic messages.
//!
//! The proxy never logs a secret on purpose (secrets are `secrecy` types); this is the
//! second line of defence for text we do not control, such as an upstream error message or
//! a panic payload. Anything that looks like an Anthropic key or token (`sk-ant-…`), a bearer
//! credential (`Bearer …`), a client key (`cnp_live_…`, `cnp_test_…`) or an OAuth token in
//! the original's `token-…` shape keeps its prefix and loses the rest: `sk-ant-****`.

use std::borrow::Cow;
use std::io;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};

const PREFIXES: &[&str] = &[
    "sk-ant-",
    "Bearer ",
    "bearer ",
    "cnp_live_",
    "cnp_test_",
    "token-",
];
const MASK: &str = "****";

static MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(PREFIXES)
        .expect("static patterns compile")
});

fn is_secret_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Masks every secret-looking token in `text`, keeping the recognisable prefix.
pub fn mask(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    for m in MATCHER.find_iter(text) {
        if m.start() < copied {
            continue;
        }
        let secret_start = m.end();
        let secret_end = bytes[secret_start..]
            .iter()
            .position(|&b| !is_secret_char(b))
            .map_or(bytes.len(), |n| secret_start + n);
        if secret_end == secret_start {
            continue;
        }
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        out.push_str(&text[copied..secret_start]);
        out.push_str(MASK);
        copied = secret_end;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// An `io::Write` that masks secrets in everything written through it.
///
/// The tracing formatter writes each event with one `write_all`, so each call sees a whole
/// log line and no secret is split across two calls.
pub struct MaskingWriter<W> {
    inner: W,
}

impl<W> MaskingWriter<W> {
    pub fn new(inner: W) -> Self {
        MaskingWriter { inner }
    }
}

impl<W: io::Write> io::Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(mask(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_each_kind_and_keeps_prefix() {
        let cases = [
            ("key sk-ant-api03-AbC_d-ef==, ok", "key sk-ant-****, ok"),
            (
                "authorization: Bearer eyJhbGciOi.x.y",
                "authorization: Bearer ****",
            ),
            ("client cnp_live_Zx9-_aa end", "client cnp_live_**** end"),
            ("client cnp_test_Zx9", "client cnp_test_****"),
            ("oauth token-abc123 x", "oauth token-**** x"),
            (
                "\"x-api-key\":\"sk-ant-oat01-zz\"",
                "\"x-api-key\":\"sk-ant-****\"",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(mask(input), want, "{input}");
        }
    }

    #[test]
    fn leaves_clean_text_alone_without_copying() {
        assert!(matches!(mask("GET /v1/models 200 12ms"), Cow::Borrowed(_)));
        assert_eq!(mask("Bearer "), "Bearer ");
    }

    #[test]
    fn writer_masks_lines() {
        let mut out = Vec::new();
        let mut w = MaskingWriter::new(&mut out);
        io::Write::write_all(&mut w, b"a sk-ant-secret b\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a sk-ant-**** b\n");
    }
}
