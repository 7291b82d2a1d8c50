//! Reads a JSON object from a stream piece by piece, so that serde_json
//! parses each piece from memory: its keys, its values, and, for the
//! values a caller reads as lists, their items one by one.
//!
//! serde_json parses a [`Read`] one byte at a time, counting lines and
//! columns as it goes, and must copy every string it returns; from a slice
//! it is much faster and borrows. Reading a gigabyte governance export
//! whole instead would hold all of it. This reader holds one buffer, which
//! grows only to hold the largest piece.
//!
//! It checks the grammar *between* pieces: braces, brackets, colons,
//! commas, whitespace and the end of the input. Each piece is parsed by the
//! caller straight from the buffer, and the caller's parser says where the
//! piece ends, or that the buffer cuts it off (the reader then reads more
//! and asks again). So when this reader and the caller's parser both
//! accept a document, it is valid JSON made of exactly those pieces.
//!
//! Errors carry no position. A caller that needs to say where a document is
//! wrong reads it again with a parser that tracks positions.

use std::io::Read;

/// How much is read at a time.
const CHUNK: usize = 1 << 20;

/// The document could not be read, or is not the JSON expected at this
/// point. Neither says where: see the module's documentation.
#[derive(Debug)]
pub(crate) struct SplitError;

impl From<std::io::Error> for SplitError {
    fn from(_: std::io::Error) -> Self {
        SplitError
    }
}

/// What a caller's parser made of the input it was shown.
pub(crate) enum Parsed {
    /// It parsed one value from the bytes shown, using this many of them.
    Used(usize),
    /// The bytes shown end inside the value: more are needed.
    CutOff,
}

/// Parses one `T` from the start of `rest` with serde_json and gives it to
/// `each`; says how much of `rest` it used, or that `rest` ends inside it.
pub(crate) fn parse_piece<'t, T: serde::Deserialize<'t>>(
    rest: &'t [u8],
    each: impl FnOnce(T),
) -> Result<Parsed, SplitError> {
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
    match values.next() {
        Some(Ok(v)) => {
            let used = values.byte_offset();
            each(v);
            Ok(Parsed::Used(used))
        }
        Some(Err(e)) if e.is_eof() => Ok(Parsed::CutOff),
        _ => Err(SplitError),
    }
}

/// Where the reader is in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After `{`, before the first key.
    Open,
    /// After a key and its colon.
    Value,
    /// After a value, before `,` or `}`.
    AfterValue,
    /// After a list's `[`, before its first item.
    ListOpen,
    /// After a list's item, before `,` or `]`.
    AfterItem,
    /// After the object's `}`.
    Closed,
}

/// A JSON object read piece by piece from a stream.
pub(crate) struct ObjectReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// How much of `buf` holds input.
    len: usize,
    /// Where the next byte to look at is.
    pos: usize,
    eof: bool,
    state: State,
}

impl<R: Read> ObjectReader<R> {
    /// Starts reading `reader`, which must hold an object.
    pub(crate) fn open(reader: R) -> Result<Self, SplitError> {
        let mut r = ObjectReader {
            reader,
            buf: Vec::new(),
            len: 0,
            pos: 0,
            eof: false,
            state: State::Open,
        };
        r.expect(b'{')?;
        Ok(r)
    }

    /// The next key, with its colon read; `None` after the object's last
    /// value.
    pub(crate) fn next_key(&mut self) -> Result<Option<String>, SplitError> {
        if !self.next_member([State::Open, State::AfterValue], b'}', State::Closed)? {
            return Ok(None);
        }
        // A piece that is not a string fails to parse as one.
        let mut key = None;
        self.piece(|rest| parse_piece(rest, |k: String| key = Some(k)))?;
        self.expect(b':')?;
        self.state = State::Value;
        key.map(Some).ok_or(SplitError)
    }

    /// Parses the value after the last key with `parse` (see
    /// [`ObjectReader::next_item`]).
    pub(crate) fn value(
        &mut self,
        parse: impl FnMut(&[u8]) -> Result<Parsed, SplitError>,
    ) -> Result<(), SplitError> {
        if self.state != State::Value {
            return Err(SplitError);
        }
        self.skip_whitespace()?;
        self.piece(parse)?;
        self.state = State::AfterValue;
        Ok(())
    }

    /// Starts reading the value after the last key as a list, item by item
    /// ([`ObjectReader::next_item`]).
    pub(crate) fn list(&mut self) -> Result<(), SplitError> {
        if self.state != State::Value {
            return Err(SplitError);
        }
        self.expect(b'[')?;
        self.state = State::ListOpen;
        Ok(())
    }

    /// Parses the list's next item with `parse`, which is shown the input
    /// from the item's first byte to the end of what has been read, and
    /// says how much of it the item took ([`parse_piece`]). False after the
    /// list's last item.
    ///
    /// An item must be an object, a list, a string or `null`: values that
    /// show where they end. (A number cut off by the buffer would parse as a
    /// shorter number.)
    pub(crate) fn next_item(
        &mut self,
        parse: impl FnMut(&[u8]) -> Result<Parsed, SplitError>,
    ) -> Result<bool, SplitError> {
        if !self.next_member([State::ListOpen, State::AfterItem], b']', State::AfterValue)? {
            return Ok(false);
        }
        self.piece(parse)?;
        self.state = State::AfterItem;
        Ok(true)
    }

    /// Checks that nothing but whitespace follows the object, and gives the
    /// reader back, read to its end.
    pub(crate) fn finish(mut self) -> Result<R, SplitError> {
        if self.state != State::Closed || self.skip_whitespace()?.is_some() {
            return Err(SplitError);
        }
        Ok(self.reader)
    }

    /// Moves to the next member of the object or list being read, whose
    /// states are `[before the first member, after a member]`: over the
    /// comma before it, if it is not the first. At `close` instead, moves
    /// past it to state `closed` and gives false.
    fn next_member(
        &mut self,
        [first, after]: [State; 2],
        close: u8,
        closed: State,
    ) -> Result<bool, SplitError> {
        let next = self.skip_whitespace()?;
        if self.state != first && self.state != after {
            return Err(SplitError);
        }
        match next {
            Some(b) if b == close => {
                self.pos += 1;
                self.state = closed;
                Ok(false)
            }
            Some(b',') if self.state == after => {
                self.pos += 1;
                self.skip_whitespace()?;
                Ok(true)
            }
            Some(_) if self.state == first => Ok(true),
            _ => Err(SplitError),
        }
    }

    /// Skips whitespace and reads `byte`.
    fn expect(&mut self, byte: u8) -> Result<(), SplitError> {
        if self.skip_whitespace()? != Some(byte) {
            return Err(SplitError);
        }
        self.pos += 1;
        Ok(())
    }

    /// Parses the value at `pos` with `parse`, reading more while the
    /// buffer cuts it off, and moves past it.
    fn piece(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Result<Parsed, SplitError>,
    ) -> Result<(), SplitError> {
        if !matches!(self.peek()?, Some(b'{' | b'[' | b'"' | b'n')) {
            return Err(SplitError);
        }
        loop {
            let rest = &self.buf[self.pos..self.len];
            match parse(rest)? {
                Parsed::Used(n) if n <= rest.len() => {
                    self.pos += n;
                    return Ok(());
                }
                Parsed::Used(_) => return Err(SplitError),
                Parsed::CutOff => {
                    // Show twice as much next time (or all there is), so
                    // that a piece much larger than a read is parsed again
                    // only a few times, not once per read.
                    let target = 2 * (self.len - self.pos).max(CHUNK / 2);
                    let mut more = false;
                    while self.len - self.pos < target && self.fill()? {
                        more = true;
                    }
                    if !more {
                        return Err(SplitError);
                    }
                }
            }
        }
    }

    /// Skips whitespace; gives the next byte, or `None` at the end of the
    /// input.
    fn skip_whitespace(&mut self) -> Result<Option<u8>, SplitError> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                other => return Ok(other),
            }
        }
    }

    /// The byte at `pos`, reading more if needed; `None` at the end.
    fn peek(&mut self) -> Result<Option<u8>, SplitError> {
        while self.pos >= self.len {
            if !self.fill()? {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[self.pos]))
    }

    /// Reads more input after what is from `pos` on, which is moved to the
    /// front of the buffer. False at the end of the input.
    fn fill(&mut self) -> Result<bool, SplitError> {
        if self.eof {
            return Ok(false);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.buf.len() - self.len < CHUNK / 2 {
            self.buf.resize(self.len + CHUNK, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reader that gives at most `step` bytes per read, to cut every
    /// piece at every place.
    pub(crate) struct Trickle<'a> {
        pub(crate) data: &'a [u8],
        pub(crate) step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every key with its whole value or its items, as serde_json values;
    /// the keys in `lists` are read as lists.
    fn read_all(
        text: &str,
        step: usize,
        lists: &[&str],
    ) -> Result<Vec<(String, Vec<serde_json::Value>)>, SplitError> {
        let mut doc = ObjectReader::open(Trickle {
            data: text.as_bytes(),
            step,
        })?;
        let mut out = Vec::new();
        while let Some(key) = doc.next_key()? {
            let mut values = Vec::new();
            if lists.contains(&key.as_str()) {
                doc.list()?;
                while doc.next_item(|rest| parse_piece(rest, |v| values.push(v)))? {}
            } else {
                doc.value(|rest| parse_piece(rest, |v| values.push(v)))?;
            }
            out.push((key, values));
        }
        let rest = doc.finish()?;
        assert!(rest.data.is_empty(), "the reader is read to its end");
        Ok(out)
    }

    const TRICKY: &str = " \r\n\t{ \"a\\u0062\" :\n[ {\"x\": \"],}{[\\\"\\\\\", \"y\": [1, {\"z\": null}]} ,\t\"é😀\\n\" , [ ] , null ],\
\"when\":\"2026-01-01T00:00:00Z\", \"none\" : null, \"empty\": [], \"obj\": {\"k\": [\"v\"]} } \n";

    #[test]
    fn pieces_are_what_serde_json_reads_whatever_the_reads_cut() {
        let whole: serde_json::Value = serde_json::from_str(TRICKY).unwrap();
        let expected = vec![
            ("ab".to_owned(), whole["ab"].as_array().unwrap().clone()),
            ("when".to_owned(), vec![whole["when"].clone()]),
            ("none".to_owned(), vec![serde_json::Value::Null]),
            ("empty".to_owned(), Vec::new()),
            ("obj".to_owned(), vec![whole["obj"].clone()]),
        ];
        for step in [1, 2, 3, 7, 64, usize::MAX] {
            let got = read_all(TRICKY, step, &["ab", "empty"]).unwrap();
            assert_eq!(got, expected, "reads of {step} bytes");
        }
        // An empty object has no keys.
        assert!(read_all("{}", 1, &[]).unwrap().is_empty());
    }

    #[test]
    fn a_piece_larger_than_the_buffer_is_read_whole() {
        let long = "x".repeat(3 * CHUNK + 17);
        let text = format!("{{\"l\": [\"{long}\", {{\"k\": \"{long}\"}}]}}");
        let got = read_all(&text, 4096, &["l"]).unwrap();
        assert_eq!(got[0].1[0], serde_json::Value::String(long.clone()));
        assert_eq!(got[0].1[1]["k"], serde_json::Value::String(long));
    }

    #[test]
    fn anything_but_json_between_the_pieces_is_refused() {
        for text in [
            "",
            "   ",
            "[]",
            "{",
            "{\"a\": [1]}",
            "{\"a\": []",
            "{\"a\": [], }",
            "{\"a\": [{}, ]}",
            "{\"a\": [{} {}]}",
            "{\"a\": [,{}]}",
            "{\"a\" [{}]}",
            "{\"a\": {}}",
            "{\"a\": [{}]} x",
            "{\"a\": [{}]}{}",
            "{\"a\": [{}], \"b\": 1}",
            "{\"a\": [{}], \"b\": nul}",
            "{\"a\": [{}], \"b\": nullx}",
            "{\"a\": [{\"k\": \"v}]}",
            "{\"a\": [{\"k\": \"v\"]}",
            "{\"a\": [{\"k\": \"v\\\"}]}",
            "{a: []}",
            "{\"a\": [], \"b\": []",
        ] {
            for step in [1, 5, usize::MAX] {
                assert!(
                    read_all(text, step, &["a"]).is_err(),
                    "{text:?} (reads of {step}) was accepted"
                );
            }
        }
    }
}
