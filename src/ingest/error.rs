//! What can go wrong while reading a collection, as miette diagnostics.
//!
//! A bad record is reported as a [`RecordError`]: the file, the line (or the
//! JSON path inside a document), what is wrong, and — for line-oriented
//! inputs — the offending line alone with a caret under the bad part. Every
//! bad record of a file is collected and reported together in
//! [`IngestError::Invalid`], never just the first.

use std::fmt;
use std::path::PathBuf;

use miette::{Diagnostic, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};
use thiserror::Error;

/// The most bad records reported per file; the count says how many more.
pub(crate) const MAX_REPORTED_PER_FILE: usize = 50;

/// An error that stops ingest.
#[derive(Debug, Error, Diagnostic)]
pub enum IngestError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(code(syncproof::ingest::io))]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The collection's layout is wrong (missing or unlisted files, links).
    #[error("collection `{root}` is not valid: {summary}")]
    #[diagnostic(code(syncproof::ingest::collection))]
    Collection {
        /// The collection root.
        root: PathBuf,
        /// One line that counts the problems.
        summary: String,
        /// Each problem.
        #[related]
        problems: Vec<RecordError>,
    },
    /// One input file holds invalid records.
    #[error("`{file}` has {count} invalid record{plural}", plural = if *.count == 1 { "" } else { "s" })]
    #[diagnostic(
        code(syncproof::ingest::invalid),
        help("fix the records listed; `docs/formats.md` describes every field")
    )]
    Invalid {
        /// The file, relative to the collection root.
        file: String,
        /// How many records were bad (may exceed the number listed).
        count: usize,
        /// The bad records, in file order.
        #[related]
        errors: Vec<RecordError>,
    },
    /// Several files are invalid.
    #[error("the collection has invalid input in {} file{}", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    #[diagnostic(code(syncproof::ingest::invalid_files))]
    Many(#[related] Vec<IngestError>),
}

/// Where in a file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A 1-based line, with an optional 0-based column.
    Line {
        /// Line number.
        line: u64,
        /// Column, when known.
        column: Option<usize>,
    },
    /// A path inside a structured document, e.g. `identities[3].id`.
    Path(String),
    /// The file as a whole.
    File,
}

/// One bad record: where it is and what is wrong with it.
#[derive(Debug, Error)]
pub struct RecordError {
    file: String,
    location: Location,
    message: String,
    help: Option<String>,
    snippet: Option<Box<LineSnippet>>,
}

impl RecordError {
    /// A problem at a line.
    pub(crate) fn at_line(file: &str, line: u64, message: impl Into<String>) -> Self {
        RecordError {
            file: file.to_owned(),
            location: Location::Line { line, column: None },
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    /// A problem at a JSON/YAML path inside a document.
    pub(crate) fn at_path(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        RecordError {
            file: file.to_owned(),
            location: Location::Path(path.into()),
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    /// A problem with a file as a whole.
    pub(crate) fn in_file(file: &str, message: impl Into<String>) -> Self {
        RecordError {
            file: file.to_owned(),
            location: Location::File,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    /// Attaches the offending line, with the bad span (byte offsets into the
    /// line) underlined. Only that line is kept, never the whole file.
    pub(crate) fn with_snippet(mut self, text: &str, column: usize, len: usize) -> Self {
        if let Location::Line { line, .. } = self.location {
            // Long lines are cut so a diagnostic stays readable.
            let keep = text.len().min(400);
            let mut end = keep;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let column = column.min(end);
            self.location = Location::Line {
                line,
                column: Some(column),
            };
            self.snippet = Some(Box::new(LineSnippet {
                name: self.file.clone(),
                text: text[..end].to_owned(),
                line: line.saturating_sub(1) as usize,
                span: SourceSpan::new(column.into(), len.min(end - column)),
            }));
        }
        self
    }

    /// Adds advice shown under the error.
    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The file, relative to the collection root.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where in the file.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Line {
                line,
                column: Some(c),
            } => write!(f, "{}:{}:{}: {}", self.file, line, c + 1, self.message),
            Location::Line { line, column: None } => {
                write!(f, "{}:{}: {}", self.file, line, self.message)
            }
            Location::Path(p) => write!(f, "{}: {}: {}", self.file, p, self.message),
            Location::File => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl Diagnostic for RecordError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.snippet.as_deref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.snippet.as_ref().map(|s| {
            Box::new(std::iter::once(miette::LabeledSpan::new_with_span(
                Some("here".to_owned()),
                s.span,
            ))) as Box<dyn Iterator<Item = miette::LabeledSpan>>
        })
    }
}

/// A single line of an input file, shown with its real line number.
#[derive(Debug)]
struct LineSnippet {
    name: String,
    text: String,
    /// 0-based line number in the original file.
    line: usize,
    span: SourceSpan,
}

impl SourceCode for LineSnippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        _context_lines_before: usize,
        _context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        if span.offset() + span.len() > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            self.text.as_bytes(),
            SourceSpan::new(0.into(), self.text.len()),
            self.line,
            0,
            1,
        )))
    }
}

/// Collects bad records for one file and turns them into an error.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<RecordError>,
    count: usize,
}

impl Problems {
    /// Records one problem (only the first [`MAX_REPORTED_PER_FILE`] are kept).
    pub(crate) fn push(&mut self, e: RecordError) {
        self.count += 1;
        if self.errors.len() < MAX_REPORTED_PER_FILE {
            self.errors.push(e);
        }
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `Ok(())` when empty, else the collected error for `file`.
    pub(crate) fn into_result(self, file: &str) -> Result<(), IngestError> {
        if self.count == 0 {
            Ok(())
        } else {
            Err(IngestError::Invalid {
                file: file.to_owned(),
                count: self.count,
                errors: self.errors,
            })
        }
    }
}

/// Combines the errors of several files into one.
pub(crate) fn combine(mut errors: Vec<IngestError>) -> Result<(), IngestError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(IngestError::Many(errors)),
    }
}
