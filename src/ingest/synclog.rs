//! Sync logs: JSON Lines, one CloudEvents 1.0 event (structured mode) per line.
//!
//! Events are streamed to a sink one at a time, never all held in memory. A bad
//! line does not stop the read: every bad line of the file is collected and
//! reported together. With quarantine on, bad lines are set aside (and listed
//! in the output) instead of failing the run.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::digest::{HashingReader, Sha256Digest};
use super::document::strip_location;
use super::error::{IngestError, Problems, RecordError};
use super::model::{ChangeRequest, Event, EventBody, SourceRef};
use super::raw::{
    event_type, RawAttempted, RawChangeRequested, RawConfirmed, RawConnectorError, RawFailed,
    RawHeartbeat,
};
use crate::time::parse_timestamp;

/// A log line that was set aside under `--quarantine`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Rejected {
    /// The file, relative to the collection root.
    pub file: String,
    /// The 1-based line.
    pub line: u64,
    /// SHA-256 of the line's bytes.
    pub sha256: Sha256Digest,
    /// Why it was rejected.
    pub reason: String,
}

/// What the reader must know to validate events.
pub(crate) struct LogContext<'a> {
    /// Application ids from `collection.yaml`.
    pub(crate) applications: &'a BTreeSet<String>,
    /// Connector ids from `collection.yaml`.
    pub(crate) connectors: &'a BTreeSet<String>,
}

/// Envelope with `data` kept as raw JSON until the type is known.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    specversion: Option<&'a str>,
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    source: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "type", default)]
    ty: Option<&'a str>,
    #[serde(default)]
    time: Option<&'a str>,
    #[serde(default)]
    datacontenttype: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// Reads the log at `path` (named `file` in the collection), sending every
/// valid event to `sink`. Returns the lines rejected under quarantine (without
/// quarantine, any bad line makes it an error after the whole file is read),
/// and the file's size and SHA-256.
pub(crate) fn read(
    file: &str,
    path: &Path,
    ctx: &LogContext<'_>,
    quarantine: bool,
    sink: &mut (dyn FnMut(Event) + Send),
) -> Result<(Vec<Rejected>, (u64, String)), IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    // The file is hashed as it is parsed: one read, and the digest covers
    // exactly the bytes the events came from.
    let mut hashing = HashingReader::new(f);
    let rejected = read_from(
        file,
        std::io::BufReader::with_capacity(1 << 16, &mut hashing),
        ctx,
        quarantine,
        sink,
    )
    .map_err(|e| match e {
        ReadError::Io(source) => io(source),
        ReadError::Invalid(e) => e,
    })?;
    let digest = hashing.finish().map_err(io)?;
    Ok((rejected, digest))
}

/// Why reading a log stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The reader failed.
    Io(std::io::Error),
    /// Lines were invalid (and quarantine was off).
    Invalid(IngestError),
}

/// Reads a log from any reader (tests use byte slices).
pub(crate) fn read_from(
    file: &str,
    mut reader: impl BufRead + Send,
    ctx: &LogContext<'_>,
    quarantine: bool,
    sink: &mut (dyn FnMut(Event) + Send),
) -> Result<Vec<Rejected>, ReadError> {
    let file_ref: Arc<str> = Arc::from(file);
    let mut problems = Problems::default();
    let mut rejected = Vec::new();
    let mut line_no = 0u64;
    // Lines are read and parsed in batches on the thread pool while the
    // batch before is handed to `sink` here, in line order: the other core
    // (idle once the desired state is parsed) shares the parsing, and the
    // events reach `sink` in exactly the order of a line-by-line read.
    let parse = |batch: &Batch| -> Vec<(u64, Sha256Digest, Result<Event, RecordError>)> {
        use rayon::prelude::*;
        batch
            .lines
            .par_iter()
            .with_min_len(256)
            .map(|&(line, start, end)| {
                let bytes = &batch.text[start..end];
                let sha256 = Sha256Digest::of(bytes);
                (
                    line,
                    sha256,
                    parse_event(file, &file_ref, line, bytes, sha256, ctx),
                )
            })
            .collect()
    };
    let mut next = Batch::default();
    next.fill(&mut reader, &mut line_no)
        .map_err(ReadError::Io)?;
    let mut parsed = parse(&next);
    while !parsed.is_empty() {
        let (more, ()) = rayon::join(
            || -> std::io::Result<_> {
                next.fill(&mut reader, &mut line_no)?;
                Ok(parse(&next))
            },
            || {
                for (line, sha256, outcome) in parsed.drain(..) {
                    match outcome {
                        Ok(event) => sink(event),
                        Err(e) if quarantine => rejected.push(Rejected {
                            file: file.to_owned(),
                            line,
                            sha256,
                            reason: e.message().to_owned(),
                        }),
                        Err(e) => problems.push(e),
                    }
                }
            },
        );
        parsed = more.map_err(ReadError::Io)?;
    }
    problems.into_result(file).map_err(ReadError::Invalid)?;
    Ok(rejected)
}

/// Lines of a log read but not parsed yet: their bytes, and for each its
/// 1-based number and range in `text` (without the line ending). Blank lines
/// are skipped.
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    lines: Vec<(u64, usize, usize)>,
}

impl Batch {
    /// Lines per batch: enough to spread over the pool, few enough to keep
    /// a batch about a megabyte.
    const LINES: usize = 4096;

    /// Replaces the batch with the next lines of `reader` (none at the end).
    fn fill(&mut self, reader: &mut impl BufRead, line_no: &mut u64) -> std::io::Result<()> {
        self.text.clear();
        self.lines.clear();
        while self.lines.len() < Self::LINES {
            let start = self.text.len();
            let n = reader.read_until(b'\n', &mut self.text)?;
            if n == 0 {
                break;
            }
            *line_no += 1;
            let mut end = self.text.len();
            while end > start && matches!(self.text[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            if self.text[start..end].iter().all(u8::is_ascii_whitespace) {
                self.text.truncate(start);
                continue;
            }
            self.lines.push((*line_no, start, end));
        }
        Ok(())
    }
}

/// One line (its bytes without the line ending) as an event.
fn parse_event(
    file: &str,
    file_ref: &Arc<str>,
    line_no: u64,
    bytes: &[u8],
    sha256: Sha256Digest,
    ctx: &LogContext<'_>,
) -> Result<Event, RecordError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            parse_line(file, line_no, text, ctx).map(|(time, ce_source, ce_id, body)| Event {
                ce_source,
                ce_id,
                time,
                body,
                source: SourceRef {
                    file: file_ref.clone(),
                    line: line_no,
                    sha256,
                },
            })
        }
        Err(e) => Err(RecordError::at_line(
            file,
            line_no,
            format!("line is not valid UTF-8 (byte {})", e.valid_up_to() + 1),
        )),
    }
}

type Parsed = (crate::time::Timestamp, String, String, EventBody);

/// Validates one line into an event.
fn parse_line(
    file: &str,
    line: u64,
    text: &str,
    ctx: &LogContext<'_>,
) -> Result<Parsed, RecordError> {
    let fail =
        |col: usize, msg: String| RecordError::at_line(file, line, msg).with_snippet(text, col, 1);
    let env: Envelope = serde_json::from_str(text).map_err(|e| {
        let msg = strip_location(&e.to_string());
        fail(
            e.column().saturating_sub(1),
            format!("not a JSON object: {msg}"),
        )
    })?;
    let require = |name: &str, v: Option<&str>| -> Result<(), RecordError> {
        match v {
            Some(s) if !s.is_empty() => Ok(()),
            _ => Err(fail(
                0,
                format!("missing required CloudEvents attribute `{name}`"),
            )),
        }
    };
    require("specversion", env.specversion)?;
    if env.specversion != Some("1.0") {
        return Err(fail(
            0,
            format!(
                "unsupported `specversion` `{}` (expected `1.0`)",
                env.specversion.unwrap_or_default()
            ),
        ));
    }
    require("id", env.id.as_deref())?;
    require("source", env.source.as_deref())?;
    require("type", env.ty)?;
    require("time", env.time)?;
    if let Some(ct) = env.datacontenttype {
        if !ct.starts_with("application/json") {
            return Err(fail(
                0,
                format!("unsupported `datacontenttype` `{ct}` (expected `application/json`)"),
            ));
        }
    }
    let time = parse_timestamp(env.time.unwrap_or_default())
        .map_err(|e| fail(0, format!("`time`: {e}")))?;
    let ty = env.ty.unwrap_or_default();
    let Some(data) = env.data else {
        return Err(fail(0, format!("event of type `{ty}` has no `data`")));
    };
    let body = match ty {
        event_type::CHANGE_REQUESTED => {
            let d: RawChangeRequested = data_as(data, &fail)?;
            if !ctx.applications.contains(&d.application) {
                return Err(fail(
                    0,
                    format!(
                        "`data.application`: unknown application `{}` (not in `collection.yaml`)",
                        d.application
                    ),
                ));
            }
            nonempty("data.idempotency_key", &d.idempotency_key, &fail)?;
            nonempty("data.identity", &d.identity, &fail)?;
            match (&d.entitlement, d.operation.is_account_level()) {
                (None, false) => {
                    return Err(fail(
                        0,
                        format!(
                            "`data.entitlement` is required for a `{}` change",
                            d.operation.as_str()
                        ),
                    ))
                }
                (Some(e), false) => nonempty("data.entitlement", e, &fail)?,
                _ => {}
            }
            EventBody::ChangeRequested {
                idempotency_key: d.idempotency_key,
                request: ChangeRequest {
                    operation: d.operation,
                    identity: d.identity,
                    application: d.application,
                    entitlement: if d.operation.is_account_level() {
                        None
                    } else {
                        d.entitlement
                    },
                    requester: d.requester,
                    approval: d.approval,
                    ticket: d.ticket,
                    batch: d.batch,
                },
            }
        }
        event_type::CHANGE_ATTEMPTED => {
            let d: RawAttempted = data_as(data, &fail)?;
            nonempty("data.idempotency_key", &d.idempotency_key, &fail)?;
            if d.attempt == 0 {
                return Err(fail(0, "`data.attempt` counts from 1".to_owned()));
            }
            EventBody::DeliveryAttempted {
                idempotency_key: d.idempotency_key,
                attempt: d.attempt,
                outcome: d.outcome,
                error: d.error,
            }
        }
        event_type::CHANGE_CONFIRMED => {
            let d: RawConfirmed = data_as(data, &fail)?;
            nonempty("data.idempotency_key", &d.idempotency_key, &fail)?;
            EventBody::ChangeConfirmed {
                idempotency_key: d.idempotency_key,
                method: d.method,
            }
        }
        event_type::CHANGE_FAILED => {
            let d: RawFailed = data_as(data, &fail)?;
            nonempty("data.idempotency_key", &d.idempotency_key, &fail)?;
            EventBody::ChangeFailed {
                idempotency_key: d.idempotency_key,
                reason: d.reason,
            }
        }
        event_type::HEARTBEAT => {
            let d: RawHeartbeat = data_as(data, &fail)?;
            known_connector(&d.connector, ctx, &fail)?;
            EventBody::Heartbeat {
                connector: d.connector,
            }
        }
        event_type::CONNECTOR_ERROR => {
            let d: RawConnectorError = data_as(data, &fail)?;
            known_connector(&d.connector, ctx, &fail)?;
            EventBody::ConnectorError {
                connector: d.connector,
                error: d.error,
            }
        }
        other => {
            return Err(fail(0, format!("unknown event type `{other}`"))
                .with_help(format!("known types: {}", event_type::ALL.join(", "))))
        }
    };
    Ok((
        time,
        env.source.map(|s| s.into_owned()).unwrap_or_default(),
        env.id.map(|s| s.into_owned()).unwrap_or_default(),
        body,
    ))
}

fn data_as<T: DeserializeOwned>(
    data: &RawValue,
    fail: &dyn Fn(usize, String) -> RecordError,
) -> Result<T, RecordError> {
    // Fast path, as for documents: valid data is parsed once, without
    // tracking the path; only a failure is parsed again to say where.
    if let Ok(v) = serde_json::from_str(data.get()) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(data.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let msg = strip_location(&e.into_inner().to_string());
        if path == "." {
            fail(0, format!("`data`: {msg}"))
        } else {
            fail(0, format!("`data.{path}`: {msg}"))
        }
    })
}

fn nonempty(
    name: &str,
    value: &str,
    fail: &dyn Fn(usize, String) -> RecordError,
) -> Result<(), RecordError> {
    if value.trim().is_empty() {
        Err(fail(0, format!("`{name}` is empty")))
    } else {
        Ok(())
    }
}

fn known_connector(
    connector: &str,
    ctx: &LogContext<'_>,
    fail: &dyn Fn(usize, String) -> RecordError,
) -> Result<(), RecordError> {
    if ctx.connectors.contains(connector) {
        Ok(())
    } else {
        Err(fail(
            0,
            format!("`data.connector`: unknown connector `{connector}` (no application in `collection.yaml` uses it)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_sets() -> (BTreeSet<String>, BTreeSet<String>) {
        (["crm".to_owned()].into(), ["conn-crm".to_owned()].into())
    }

    fn read_str(text: &str, quarantine: bool) -> (Vec<Event>, Result<Vec<Rejected>, ReadError>) {
        let (apps, conns) = ctx_sets();
        let ctx = LogContext {
            applications: &apps,
            connectors: &conns,
        };
        let mut events = Vec::new();
        let r = read_from("log.jsonl", text.as_bytes(), &ctx, quarantine, &mut |e| {
            events.push(e)
        });
        (events, r)
    }

    const REQ: &str = r#"{"specversion":"1.0","id":"e1","source":"urn:c","type":"dev.syncproof.change.requested","time":"2026-11-02T09:14:00Z","data":{"idempotency_key":"k1","operation":"revoke","identity":"alice","application":"crm","entitlement":"admin"}}"#;

    #[test]
    fn reads_a_valid_event() {
        let (events, r) = read_str(&format!("{REQ}\n\n"), false);
        assert!(r.unwrap().is_empty());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].source.line, 1);
        assert_eq!(events[0].source.sha256, Sha256Digest::of(REQ.as_bytes()));
        assert!(
            matches!(&events[0].body, EventBody::ChangeRequested { idempotency_key, .. } if idempotency_key == "k1")
        );
    }

    #[test]
    fn events_and_rejections_keep_line_order_across_batches() {
        // More lines than several batches, with blank lines, CRLF endings and
        // bad lines on both sides of batch boundaries: every event and every
        // rejection comes out in line order with its own line number.
        let n = Batch::LINES * 3 + 17;
        let bad = [1, Batch::LINES - 1, Batch::LINES, Batch::LINES + 1, n - 1];
        let mut text = String::new();
        let mut expected = Vec::new();
        for i in 0..n {
            let line = i as u64 + 1;
            if i % 1000 == 999 {
                text.push_str("   \r\n");
            } else if bad.contains(&i) {
                text.push_str("{not json\n");
            } else {
                let ev = REQ.replace("\"e1\"", &format!("\"e{i}\""));
                text.push_str(&ev);
                text.push_str(if i % 2 == 0 { "\n" } else { "\r\n" });
                expected.push((line, Sha256Digest::of(ev.as_bytes())));
            }
        }
        let (events, r) = read_str(&text, true);
        let got: Vec<(u64, Sha256Digest)> = events
            .iter()
            .map(|e| (e.source.line, e.source.sha256))
            .collect();
        assert_eq!(got, expected);
        let ids: Vec<&str> = events.iter().map(|e| e.ce_id.as_str()).collect();
        assert_eq!(ids.first(), Some(&"e0"));
        let rejected: Vec<u64> = r.unwrap().iter().map(|r| r.line).collect();
        assert_eq!(
            rejected,
            bad.iter().map(|&i| i as u64 + 1).collect::<Vec<_>>()
        );
        // Without quarantine the same lines are the errors, first ones first.
        let (_, r) = read_str(&text, false);
        let message = error_text(r);
        let first = message.find(&format!("log.jsonl:{}", bad[1] + 1));
        let last = message.find(&format!("log.jsonl:{}", n));
        assert!(
            first.is_some() && last.is_some() && first < last,
            "{message}"
        );
    }

    fn error_text(r: Result<Vec<Rejected>, ReadError>) -> String {
        match r {
            Err(ReadError::Invalid(e)) => format!("{:?}", miette::Report::new(e)),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn reports_every_bad_line() {
        let bad_json = "{not json";
        let bad_type = REQ.replace("change.requested", "change.teleported");
        let bad_time = REQ.replace("2026-11-02T09:14:00Z", "yesterday");
        let no_field = REQ.replace(r#""identity":"alice","#, "");
        let bad_app = REQ.replace(r#""application":"crm""#, r#""application":"erp""#);
        let text = [REQ, bad_json, &bad_type, &bad_time, &no_field, &bad_app].join("\n");
        let (events, r) = read_str(&text, false);
        assert_eq!(events.len(), 1);
        let shown = error_text(r);
        assert!(
            shown.contains("6 invalid records") || shown.contains("5 invalid records"),
            "{shown}"
        );
        for needle in [
            "log.jsonl:2:",
            "unknown event type `dev.syncproof.change.teleported`",
            "log.jsonl:4:",
            "missing field `identity`",
            "unknown application `erp`",
        ] {
            assert!(shown.contains(needle), "missing {needle}: {shown}");
        }
    }

    #[test]
    fn quarantine_lists_rejected_lines() {
        let text = format!("{REQ}\n{{oops\n");
        let (events, r) = read_str(&text, true);
        assert_eq!(events.len(), 1);
        let rejected = r.unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].line, 2);
    }

    #[test]
    fn missing_time_is_rejected() {
        let text = REQ.replace(r#""time":"2026-11-02T09:14:00Z","#, "");
        let shown = error_text(read_str(&text, false).1);
        assert!(shown.contains("`time`"), "{shown}");
    }

    #[test]
    fn bad_data_names_the_field() {
        // Valid data is parsed without tracking its path; a failure is
        // parsed again to name the field.
        let text = REQ.replace(r#""identity":"alice""#, r#""identity":42"#);
        let shown = error_text(read_str(&text, false).1);
        assert!(shown.contains("`data.identity`: invalid type"), "{shown}");
    }

    #[test]
    fn entitlement_required_for_revoke() {
        let text = REQ.replace(r#","entitlement":"admin""#, "");
        let shown = error_text(read_str(&text, false).1);
        assert!(shown.contains("`data.entitlement` is required"), "{shown}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_lines(s in "\\PC*") {
            let _ = read_str(&s, false);
            let _ = read_str(&s, true);
        }

        #[test]
        fn never_panics_on_mutated_events(i in 0usize..300, c in proptest::char::any()) {
            let mut s: Vec<char> = REQ.chars().collect();
            let idx = i % s.len();
            s[idx] = c;
            let text: String = s.into_iter().collect();
            let _ = read_str(&text, false);
        }
    }
}
