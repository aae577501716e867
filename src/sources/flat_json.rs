//! A fast path for the usual JSON line: one flat object of plain strings, numbers,
//! booleans and nulls, read in one pass over its bytes.
//!
//! It accepts only text that is valid JSON and reads it exactly as the serde_json path of
//! [`super::json::extract`] does (numbers correctly rounded, the last of duplicate keys
//! wins). Anything else (escapes, control characters, nesting, malformed text) gives
//! `None`, and the caller parses the line with serde_json, which also words the errors.
//! Parsing with serde_json was ~80 % of reading an event (docs/PERFORMANCE-HISTORY.md).

use super::json::Raw;
use super::texts::Texts;

/// Fills `out[i]` with the value of field `names[i]` (slots of absent fields are left
/// as they are; text through `texts`), or `None` if the line is not a flat object this
/// path reads.
pub fn extract<N: AsRef<str>>(
    line: &str,
    names: &[N],
    out: &mut [Raw],
    texts: &mut Texts,
) -> Option<()> {
    let mut c = Cursor { line, i: 0 };
    c.skip_ws();
    c.eat(b'{')?;
    c.skip_ws();
    if c.eat(b'}').is_none() {
        loop {
            let key = c.string()?;
            c.skip_ws();
            c.eat(b':')?;
            c.skip_ws();
            // A field the pipeline does not read is checked, not kept (no text copied).
            match names.iter().position(|n| n.as_ref() == key) {
                Some(i) => out[i] = c.scalar(i, texts)?,
                None => c.skip_scalar()?,
            }
            c.skip_ws();
            match c.next()? {
                b',' => c.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.skip_ws();
    (c.i == line.len()).then_some(())
}

/// Position of the first quote, backslash or control character in `bytes` (its length if
/// none), eight bytes per step. SWAR: a byte is flagged by the borrow of subtracting 1 from
/// it xor the sought byte (or 0x20 from it); flags above the first true one may be
/// spurious, so the lowest flag is the answer. The last step pads with zero bytes, which
/// are control characters: found there means not found.
fn first_string_end(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let first = |w: u64| {
        let flags = zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        (flags != 0).then(|| flags.trailing_zeros() as usize / 8)
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut i = 0;
    for chunk in &mut chunks {
        if let Some(at) = first(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) {
            return i + at;
        }
        i += 8;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    i + first(u64::from_le_bytes(last)).expect("a zero byte pads the last step")
}

struct Cursor<'a> {
    line: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.line.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    /// Steps over `b` if it is next.
    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters (the cursor on its opening quote).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        self.i += first_string_end(&self.bytes()[self.i..]);
        self.eat(b'"')?;
        // Both ends are ASCII quotes, so the slice is whole characters.
        Some(&self.line[start..self.i - 1])
    }

    /// A string (as field `field`'s text), number, boolean or null.
    fn scalar(&mut self, field: usize, texts: &mut Texts) -> Option<Raw> {
        match self.peek()? {
            b'"' => Some(Raw::Str(texts.text(field, self.string()?))),
            b't' => self.literal("true", Raw::Bool(true)),
            b'f' => self.literal("false", Raw::Bool(false)),
            b'n' => self.literal("null", Raw::Null),
            _ => self.number().map(Raw::Num),
        }
    }

    /// Steps over a scalar as [`Cursor::scalar`] reads it, without making its value.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' => self.literal("true", ()),
            b'f' => self.literal("false", ()),
            b'n' => self.literal("null", ()),
            _ => self.number().map(drop),
        }
    }

    fn literal<T>(&mut self, word: &str, value: T) -> Option<T> {
        let end = self.i + word.len();
        (self.line.get(self.i..end)? == word).then(|| {
            self.i = end;
            value
        })
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// A number by JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`,
    /// correctly rounded (as serde_json reads with `float_roundtrip`); out of range: `None`.
    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        self.i += usize::from(negative);
        let int_start = self.i;
        match self.digits() {
            0 => return None,
            n if n > 1 && self.bytes()[int_start] == b'0' => return None,
            _ => {}
        }
        let int_end = self.i;
        let mut whole = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
            whole = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            whole = false;
        }
        let n = if whole && int_end - int_start <= 19 {
            // Up to 19 digits fit a u64; its conversion rounds correctly.
            let digits = &self.bytes()[int_start..int_end];
            let m = digits
                .iter()
                .fold(0u64, |m, d| m * 10 + u64::from(d - b'0'));
            if negative {
                -(m as f64)
            } else {
                m as f64
            }
        } else {
            self.line[start..self.i].parse::<f64>().ok()?
        };
        n.is_finite().then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 4] = ["id", "ts", "u", "s"];

    /// The serde_json path alone.
    fn by_serde(line: &str) -> Result<Vec<Raw>, String> {
        let mut out = vec![Raw::Absent; NAMES.len()];
        super::super::json::extract_with_serde(line, &NAMES, &mut out).map(|_| out)
    }

    fn fast(line: &str) -> Option<Vec<Raw>> {
        let mut out = vec![Raw::Absent; NAMES.len()];
        extract(line, &NAMES, &mut out, &mut Texts::new(NAMES.len())).map(|_| out)
    }

    #[test]
    fn reads_usual_lines_as_serde_json_does() {
        for line in [
            r#"{"id":"imp-1","ts":1700000000027,"u":"u25","s":0.1234,"x":true}"#,
            r#" { "id" : "a" , "ts" : -0 , "s" : null , "u" : false } "#,
            r#"{"ts":1.5e3,"ts":-12,"s":1E-7,"u":"Mozilla/5.0 (X11; Linux) é"}"#,
            r#"{"s":123456789012345678901234567890,"ts":18446744073709551615}"#,
            r#"{"page":"https://example.com/a/long/unread/url?x=1","n":-2.5e3,"id":"b","b":null}"#,
            "{}",
        ] {
            let (fast, serde) = (fast(line), by_serde(line).ok());
            // Debug text tells -0.0 from 0.0.
            assert_eq!(format!("{fast:?}"), format!("{serde:?}"), "{line}");
            assert!(fast.is_some(), "{line}");
        }
    }

    #[test]
    fn leaves_escapes_nesting_and_malformed_lines_to_serde_json() {
        for line in [
            r#"{"id":"a\"b"}"#,
            r#"{"id":{"x":1}}"#,
            r#"{"id":[1]}"#,
            "{\"id\":\"tab\there\"}",
            r#"{"id":1,}"#,
            r#"{"id":01}"#,
            r#"{"id":1.}"#,
            r#"{"id":1e999}"#,
            r#"{"id":tru}"#,
            r#"{"id":1} x"#,
            r#"{"id" 1}"#,
            r#"{"id":"a","unread":01}"#,
            r#"{"unread":nul,"id":"a"}"#,
            r#"["id"]"#,
            "",
        ] {
            assert_eq!(fast(line), None, "{line}");
        }
    }

    proptest! {
        #[test]
        fn string_end_is_the_first_quote_backslash_or_control_byte(
            bytes in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=255], 0..40)
        ) {
            let ends = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
            let want = bytes.iter().position(|&b| ends(b)).unwrap_or(bytes.len());
            prop_assert_eq!(first_string_end(&bytes), want);
        }
    }

    /// Flat-object lines built from JSON-ish pieces, valid or not.
    fn lines() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("\"id\"".to_string()),
            Just("\"ts\"".to_string()),
            Just("\"u\"".to_string()),
            "\"[a-z\\\\\"]{0,3}\"",
        ];
        let value = prop_oneof![
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?",
            "\"[ -~é\\t]{0,12}\"",
            Just("true".to_string()),
            Just("null".to_string()),
            Just("{}".to_string()),
            "[-+.0-9eE]{1,5}",
        ];
        let ws = "[ \\t]{0,1}";
        let pair = (key, ws, value).prop_map(|(k, w, v)| format!("{k}{w}:{w}{v}"));
        (prop::collection::vec(pair, 0..5), ws, 0..3usize).prop_map(|(pairs, w, cut)| {
            let line = format!("{w}{{{}}}{w}", pairs.join(","));
            line[..line.len() - cut.min(line.len())].to_string()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn fast_path_agrees_with_serde_json(line in lines()) {
            if let Some(values) = fast(&line) {
                // Debug text tells -0.0 from 0.0.
                prop_assert_eq!(format!("{:?}", Ok::<_, String>(values)), format!("{:?}", by_serde(&line)));
            }
        }
    }
}
