//! Pulls only the wanted top-level fields out of one JSON object, without building a map.

use std::fmt;

use super::flat_json;
use super::texts::Texts;
use compact_str::{CompactString, ToCompactString};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A scalar read from a record before the pipeline types it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Raw {
    /// Not present.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A string.
    Str(CompactString),
    /// A number.
    Num(f64),
    /// `true` / `false`.
    Bool(bool),
    /// An object or array (not usable as a field value).
    Nested,
}

/// Fills `out[i]` with the value of field `names[i]` of a JSON object line: by the
/// [`flat_json`] fast path if it reads the line, else by serde_json.
pub fn extract<N: AsRef<str>>(
    line: &str,
    names: &[N],
    out: &mut [Raw],
    texts: &mut Texts,
) -> Result<(), String> {
    out.iter_mut().for_each(|r| *r = Raw::Absent);
    if flat_json::extract(line, names, out, texts).is_some() {
        return Ok(());
    }
    extract_with_serde(line, names, out)
}

/// [`extract`] by serde_json alone.
pub(super) fn extract_with_serde<N: AsRef<str>>(
    line: &str,
    names: &[N],
    out: &mut [Raw],
) -> Result<(), String> {
    out.iter_mut().for_each(|r| *r = Raw::Absent);
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(ObjectVisitor { names, out })
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

struct ObjectVisitor<'a, 'b, N> {
    names: &'a [N],
    out: &'b mut [Raw],
}

impl<'de, N: AsRef<str>> Visitor<'de> for ObjectVisitor<'_, '_, N> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(KeySeed(self.names))? {
            match slot {
                Some(i) => self.out[i] = map.next_value_seed(ScalarSeed)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Deserializes a key into the index of the wanted field it names, if any.
struct KeySeed<'a, N>(&'a [N]);

impl<'de, N: AsRef<str>> DeserializeSeed<'de> for KeySeed<'_, N> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, N: AsRef<str>> Visitor<'de> for KeySeed<'_, N> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| n.as_ref() == v))
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Raw;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(CompactString::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Num(v as f64))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Num(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Nested)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Nested)
    }
}

impl Raw {
    /// The value as text: strings as is, numbers and booleans rendered.
    pub fn text(&self) -> Option<CompactString> {
        match self {
            Raw::Str(s) => Some(s.clone()),
            Raw::Num(n) if n.fract() == 0.0 && n.abs() < 9e15 => {
                Some((*n as i64).to_compact_string())
            }
            Raw::Num(n) => Some(n.to_compact_string()),
            Raw::Bool(b) => Some(b.to_compact_string()),
            _ => None,
        }
    }

    /// [`Raw::text`], moving a string out (leaving `Absent`) instead of copying it.
    pub fn take_text(&mut self) -> Option<CompactString> {
        match std::mem::take(self) {
            Raw::Str(s) => Some(s),
            other => other.text(),
        }
    }

    /// Absent, null or the empty string.
    pub fn is_empty(&self) -> bool {
        match self {
            Raw::Absent | Raw::Null => true,
            Raw::Str(s) => super::is_blank(s),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_only_wanted_fields() {
        let mut out = vec![Raw::Absent; 3];
        extract(
            r#"{"a":1,"skip":{"x":[1,2]},"b":"h\"i","c":null}"#,
            &["b", "a", "zz"],
            &mut out,
            &mut Texts::new(3),
        )
        .unwrap();
        assert_eq!(
            out,
            vec![Raw::Str("h\"i".into()), Raw::Num(1.0), Raw::Absent]
        );
        let texts = &mut Texts::new(1);
        assert!(extract(r#"{"a":1"#, &["a"], &mut out, texts).is_err());
        assert!(extract("garbage,not json", &["a"], &mut out, texts).is_err());
    }
}
