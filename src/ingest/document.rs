//! Reading whole YAML or JSON documents into typed values, with errors that
//! name the file, the line and column when the parser knows them, and the
//! path inside the document (`identities[3].kind`).

use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed};

use super::error::RecordError;

/// Parses `text` (YAML, or JSON when `file` ends in `.json`) as `T`.
#[cfg(test)]
pub(crate) fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, RecordError> {
    parse_seed(file, text, || PhantomData::<T>)
}

/// Parses `text` (YAML, or JSON when `file` ends in `.json`) with the seed
/// `make` gives: once, and when that fails, once more with a fresh seed and
/// the path to each value tracked, to say where it failed.
pub(crate) fn parse_seed<'a, S: DeserializeSeed<'a>>(
    file: &str,
    text: &'a str,
    make: impl FnMut() -> S,
) -> Result<S::Value, RecordError> {
    if file.ends_with(".json") {
        parse_json_seed(file, text, make)
    } else {
        parse_yaml_seed(file, text, make)
    }
}

/// Parses a YAML document as `T`.
pub(crate) fn parse_yaml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, RecordError> {
    parse_yaml_seed(file, text, || PhantomData::<T>)
}

fn parse_yaml_seed<'a, S: DeserializeSeed<'a>>(
    file: &str,
    text: &'a str,
    mut make: impl FnMut() -> S,
) -> Result<S::Value, RecordError> {
    // Fast path: most documents are valid, and tracking the path of every
    // value costs time on large exports. Only a failure is parsed again, with
    // path tracking, to say where it failed.
    if let Ok(v) = make().deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        return Ok(v);
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    make()
        .deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
        .map_err(|inner| {
            let path = track.path().to_string();
            let message = strip_location(&inner.to_string());
            match inner.location() {
                Some(loc) => {
                    let line = loc.line() as u64;
                    let col = loc.column().saturating_sub(1);
                    let text_line = text.lines().nth(loc.line().saturating_sub(1)).unwrap_or("");
                    let msg = if path == "." || message.starts_with(&path) {
                        message
                    } else {
                        format!("{path}: {message}")
                    };
                    RecordError::at_line(file, line, msg).with_snippet(text_line, col, 1)
                }
                None => RecordError::at_path(file, path, message),
            }
        })
}

/// Parses a JSON document as `T`.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(
    file: &str,
    text: &'a str,
) -> Result<T, RecordError> {
    parse_json_seed(file, text, || PhantomData::<T>)
}

fn parse_json_seed<'a, S: DeserializeSeed<'a>>(
    file: &str,
    text: &'a str,
    mut make: impl FnMut() -> S,
) -> Result<S::Value, RecordError> {
    // Fast path, as for YAML.
    let mut de = serde_json::Deserializer::from_str(text);
    if let Ok(v) = make()
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
    {
        return Ok(v);
    }
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = make().deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    // Text after the document is an error too, with its place.
    let (inner, path) = match parsed.and_then(|v| de.end().map(|()| v)) {
        Ok(v) => return Ok(v),
        Err(e) => (e, track.path().to_string()),
    };
    let text_line = text
        .lines()
        .nth(inner.line().saturating_sub(1))
        .unwrap_or("");
    Err(json_error(file, &inner, &path, text_line))
}

/// The error of a JSON document that failed at `path` (`.` for the whole
/// document), with the text of the failing line.
fn json_error(file: &str, inner: &serde_json::Error, path: &str, text_line: &str) -> RecordError {
    let col = inner.column().saturating_sub(1);
    let message = strip_location(&inner.to_string());
    let msg = if path == "." {
        message
    } else {
        format!("{path}: {message}")
    };
    RecordError::at_line(file, inner.line() as u64, msg).with_snippet(text_line, col, 1)
}

/// Parses one JSON document as it is read from `reader`, with the seed
/// `make` gives (see [`parse_seed`]). Nothing of the text is kept. When the
/// document fails to parse, `reopen` gives the input again, read once more
/// with the path to each value tracked and then for the failing line's
/// text.
pub(crate) fn parse_json_stream_seed<
    'a,
    R: std::io::Read,
    R2: std::io::Read,
    S: DeserializeSeed<'a>,
>(
    file: &str,
    reader: R,
    mut reopen: impl FnMut() -> std::io::Result<R2>,
    mut make: impl FnMut() -> S,
) -> Result<S::Value, RecordError> {
    let io_error =
        |e: std::io::Error| RecordError::in_file(file, format!("cannot be read again: {e}"));
    let mut de = serde_json::Deserializer::from_reader(reader);
    let first = make()
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    let first_error = match first {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // An I/O error has no place in the document.
    if first_error.is_io() {
        return Err(RecordError::in_file(
            file,
            strip_location(&first_error.to_string()),
        ));
    }
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_reader(reopen().map_err(io_error)?);
    let parsed = make().deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    let (inner, path) = match parsed.and_then(|v| de.end().map(|()| v)) {
        Ok(v) => return Ok(v),
        Err(e) => (e, track.path().to_string()),
    };
    let text_line = std::io::BufRead::lines(std::io::BufReader::new(reopen().map_err(io_error)?))
        .nth(inner.line().saturating_sub(1))
        .and_then(Result::ok)
        .unwrap_or_default();
    Err(json_error(file, &inner, &path, &text_line))
}

/// Drops the " at line X column Y" suffix parsers append; we report the
/// location ourselves.
pub(crate) fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The 1-based line of each item of the top-level block sequence `key:` in a
/// block-style YAML document. Empty when the layout is not block style.
pub(crate) fn item_lines(text: &str, key: &str) -> Vec<u64> {
    let mut lines = Vec::new();
    let mut inside = false;
    let mut item_indent: Option<usize> = None;
    let header = format!("{key}:");
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            inside = trimmed.starts_with(&header);
            item_indent = None;
            continue;
        }
        if inside && trimmed.starts_with("- ") {
            let expected = *item_indent.get_or_insert(indent);
            if indent == expected {
                lines.push(n as u64 + 1);
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be deserialised")]
    struct Doc {
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be deserialised")]
    struct Item {
        id: String,
        count: u32,
    }

    #[test]
    fn yaml_errors_name_line_and_path() {
        let text = "items:\n  - id: a\n    count: 1\n  - id: b\n    count: many\n";
        let e = parse::<Doc>("desired.yaml", text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("desired.yaml:5:"), "{shown}");
        assert!(shown.contains("items[1].count"), "{shown}");
    }

    #[test]
    fn json_errors_name_line_and_path() {
        let text = "{\"items\": [\n {\"id\": \"a\", \"count\": 1},\n {\"id\": 7, \"count\": 2}\n]}";
        let e = parse::<Doc>("d.json", text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("d.json:3:"), "{shown}");
        assert!(shown.contains("items[1].id"), "{shown}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = parse::<Doc>("x.yaml", "items: []\nextra: 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
    }
}
