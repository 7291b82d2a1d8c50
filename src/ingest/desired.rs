//! The governance system's desired state: identities and their approved
//! assignments (YAML or JSON).
//!
//! Records point back at the line where each list item starts (block-style
//! YAML; JSON documents get line 0) and carry the SHA-256 of the item's
//! canonical JSON form, so the digest does not depend on YAML layout.
//!
//! The document is visited, not built: each list item is validated as the
//! parser reaches it, and each assignment is packed into
//! [`DesiredAssignments`] at once, so a governance export of millions of
//! assignments is never held as parsed values (see `docs/performance.md`).

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::assignments::{corrupt, AssignmentWriter, DesiredAssignments, Incoming, Packed};
use super::digest::Sha256Digest;
use super::document;
use super::error::{Problems, RecordError};
use super::json_split::{parse_piece, ObjectReader, SplitError};
use super::model::{Identity, IdentityKind, SourceRef};
use super::raw::{RawAssignment, RawIdentity};
use crate::strings::StrList;
use crate::time::parse_timestamp;
use crate::FastMap;

/// The validated desired state.
#[derive(Debug, Default)]
pub(crate) struct Desired {
    /// Identities, sorted by id.
    pub(crate) identities: Vec<Identity>,
    /// Assignments, by application, each sorted by (identity, entitlement).
    pub(crate) assignments: DesiredAssignments,
}

/// Parses and validates the desired state in `text` from `file`.
pub(crate) fn parse(
    file: &str,
    text: &str,
    applications: &BTreeSet<String>,
) -> Result<Desired, Problems> {
    // Item lines exist only in block-style YAML; JSON records get line 0.
    let lines = |key| {
        if file.ends_with(".json") {
            Vec::new()
        } else {
            document::item_lines(text, key)
        }
    };
    let (identity_lines, assignment_lines) = (lines("identities"), lines("assignments"));
    let apps: Vec<&str> = applications.iter().map(String::as_str).collect();
    let new_builder = || Builder::new(file, &apps, &identity_lines, &assignment_lines);
    finish(document::parse_seed(file, text, || Document(new_builder())))
}

/// Parses and validates a JSON desired state as it is read from `reader`,
/// without holding its text: a governance export can be gigabytes.
/// `reopen` gives the file again, read only to say where a document that
/// failed to parse went wrong.
pub(crate) fn parse_json_stream<R: std::io::Read, R2: std::io::Read>(
    file: &str,
    reader: R,
    reopen: impl FnMut() -> std::io::Result<R2>,
    applications: &BTreeSet<String>,
) -> Result<Desired, Problems> {
    let apps: Vec<&str> = applications.iter().map(String::as_str).collect();
    let new_builder = || Builder::new(file, &apps, &[], &[]);
    finish(document::parse_json_stream_seed(
        file,
        reader,
        reopen,
        || Document(new_builder()),
    ))
}

/// Parses and validates a JSON desired state read from `reader` in pieces
/// ([`super::json_split`]): each identity and assignment is parsed by
/// serde_json from memory, borrowing its strings, and the text is never
/// held whole.
///
/// `None` when the document does not parse: the caller reads it again
/// with [`parse_json_stream`], which says where it is wrong. A document
/// read here gives the builder the same records, in the same order, as
/// [`parse_json_stream`] would (a test checks it), so the two differ only
/// in speed and in what they say about a document that does not parse.
pub(crate) fn parse_json_pieces<R: std::io::Read>(
    file: &str,
    reader: R,
    applications: &BTreeSet<String>,
) -> Option<Result<Desired, Problems>> {
    let apps: Vec<&str> = applications.iter().map(String::as_str).collect();
    let mut b = Builder::new(file, &apps, &[], &[]);
    read_pieces(&mut b, reader).ok()?;
    Some(b.finish())
}

/// Reads the document into `b` as [`Document`] does; any error means
/// only that the document did not parse here.
fn read_pieces<R: std::io::Read>(b: &mut Builder<'_>, reader: R) -> Result<(), SplitError> {
    let mut doc = ObjectReader::open(reader)?;
    let mut shape = Shape::default();
    while let Some(key) = doc.next_key()? {
        match shape.field(&key).map_err(|_| SplitError)? {
            0 => doc.value(|rest| parse_piece(rest, |v| b.exported_at(v)))?,
            1 => {
                doc.list()?;
                let mut i = 0;
                while doc.next_item(|rest| parse_piece(rest, |raw| b.identity(i, raw)))? {
                    i += 1;
                }
                b.identities_read = true;
            }
            _ => {
                doc.list()?;
                let mut i = 0;
                while doc.next_item(|rest| parse_piece(rest, |raw| b.assignment(i, raw)))? {
                    i += 1;
                }
            }
        }
    }
    if !shape.complete() {
        return Err(SplitError);
    }
    doc.finish()?;
    Ok(())
}

/// The desired state from what the document gave, or its problems.
fn finish(parsed: Result<Builder<'_>, RecordError>) -> Result<Desired, Problems> {
    match parsed {
        Ok(b) => b.finish(),
        Err(e) => {
            let mut problems = Problems::default();
            problems.push(e);
            Err(problems)
        }
    }
}

/// What has been read so far.
struct Builder<'f> {
    file: &'f str,
    file_ref: Arc<str>,
    /// Applications, sorted, and their positions.
    apps: &'f [&'f str],
    app_index: FastMap<&'f str, u32>,
    identity_lines: &'f [u64],
    assignment_lines: &'f [u64],
    /// Canonical-JSON buffer, reused from record to record.
    buf: Vec<u8>,
    problems: Problems,
    /// Valid identities, in the order they were read: kept in a vector, not
    /// as the values of `identity_index`, so that growing the index moves
    /// small entries, not whole identities.
    identities: Vec<Identity>,
    /// Each valid identity's position in `identities`, by id.
    identity_index: FastMap<Box<str>, u32>,
    /// Whether the `identities` list has been read: assignments met before
    /// it wait in `pending`.
    identities_read: bool,
    /// Owned: they outlive the text they were read from when it is read
    /// in pieces.
    pending: Vec<(usize, RawAssignment<'static>)>,
    /// Entitlements in the order met, by name.
    entitlements: FastMap<Box<str>, u32>,
    approvals: StrList,
    /// Valid assignments, with their application's position in `apps`,
    /// identities and entitlements numbered in the order met; in temporary
    /// buckets by application.
    incoming: Incoming,
    /// Bad assignments by position, reported after the identities.
    bad: Vec<(usize, RecordError)>,
}

impl<'f> Builder<'f> {
    fn new(
        file: &'f str,
        apps: &'f [&'f str],
        identity_lines: &'f [u64],
        assignment_lines: &'f [u64],
    ) -> Self {
        Builder {
            file,
            file_ref: Arc::from(file),
            apps,
            app_index: apps
                .iter()
                .enumerate()
                .map(|(i, a)| (*a, i as u32))
                .collect(),
            identity_lines,
            assignment_lines,
            buf: Vec::with_capacity(512),
            problems: Problems::default(),
            identities: Vec::new(),
            identity_index: FastMap::default(),
            identities_read: false,
            pending: Vec::new(),
            entitlements: FastMap::default(),
            approvals: StrList::default(),
            incoming: Incoming::default(),
            bad: Vec::new(),
        }
    }

    fn exported_at(&mut self, value: Option<String>) {
        if let Some(t) = value {
            if let Err(e) = parse_timestamp(&t) {
                self.problems
                    .push(RecordError::at_path(self.file, "exported_at", e));
            }
        }
    }

    fn identity(&mut self, i: usize, raw: RawIdentity) {
        let at = format_args!("identities[{i}]");
        let source = SourceRef {
            file: self.file_ref.clone(),
            line: self.identity_lines.get(i).copied().unwrap_or(0),
            sha256: canonical_digest(&mut self.buf, &raw),
        };
        match validate_identity(self.file, at, raw, &self.app_index, source) {
            Ok(identity) => {
                if let Some(&first) = self.identity_index.get(identity.id.as_str()) {
                    let first = &self.identities[first as usize];
                    self.problems.push(RecordError::at_path(
                        self.file,
                        format!("{at}.id"),
                        format!(
                            "identity `{}` is defined twice (first at line {})",
                            identity.id, first.source.line
                        ),
                    ));
                } else {
                    let n = self.identities.len() as u32;
                    self.identity_index
                        .insert(Box::from(identity.id.as_str()), n);
                    self.identities.push(identity);
                }
            }
            Err(e) => self.problems.push(e),
        }
    }

    fn assignment(&mut self, i: usize, raw: RawAssignment<'_>) {
        if !self.identities_read {
            self.pending.push((i, raw.into_owned()));
            return;
        }
        let at = format_args!("assignments[{i}]");
        let sha256 = canonical_digest(&mut self.buf, &raw);
        match self.validate_assignment(i, at, raw, sha256) {
            Ok((app, packed)) => self.incoming.push(app, &packed),
            Err(e) => self.bad.push((i, e)),
        }
    }

    /// Validates an assignment and packs it, with its application's
    /// position.
    fn validate_assignment(
        &mut self,
        i: usize,
        // Where the record is (`assignments[3]`), formatted only when an
        // error names it.
        at: fmt::Arguments<'_>,
        raw: RawAssignment<'_>,
        sha256: Sha256Digest,
    ) -> Result<(u32, Packed), RecordError> {
        let file = self.file;
        let Some(identity) = self.identity_index.get(raw.identity.as_ref()) else {
            return Err(RecordError::at_path(
                file,
                format!("{at}.identity"),
                format!("unknown identity `{}`", raw.identity),
            ));
        };
        let Some(&app) = self.app_index.get(raw.application.as_ref()) else {
            return Err(RecordError::at_path(
                file,
                format!("{at}.application"),
                format!(
                    "unknown application `{}` (not in `collection.yaml`)",
                    raw.application
                ),
            ));
        };
        if raw.entitlement.trim().is_empty() {
            return Err(RecordError::at_path(
                file,
                format!("{at}.entitlement"),
                "entitlement is empty",
            ));
        }
        let granted_at = parse_timestamp(&raw.granted_at)
            .map_err(|e| RecordError::at_path(file, format!("{at}.granted_at"), e))?;
        let expires_at = match &raw.expires_at {
            Some(t) => Some(
                parse_timestamp(t)
                    .map_err(|e| RecordError::at_path(file, format!("{at}.expires_at"), e))?,
            ),
            None => None,
        };
        if expires_at.is_some_and(|e| e < granted_at) {
            return Err(RecordError::at_path(
                file,
                format!("{at}.expires_at"),
                "expires before it was granted",
            ));
        }
        let too_many = || {
            RecordError::at_path(
                file,
                at.to_string(),
                "more assignments than syncproof can hold (4,294,967,294)",
            )
        };
        let identity = *identity;
        // Looked up before anything is allocated: a few distinct
        // entitlements recur millions of times.
        let entitlement = match self.entitlements.get(raw.entitlement.as_ref()) {
            Some(&n) => n,
            None => {
                let n = self.entitlements.len() as u32;
                self.entitlements
                    .insert(Box::from(raw.entitlement.as_ref()), n);
                n
            }
        };
        let approval = match &raw.approval {
            Some(a) => {
                let n = u32::try_from(self.approvals.push(a) + 1).map_err(|_| too_many())?;
                Some(NonZeroU32::new(n).ok_or_else(too_many)?)
            }
            None => None,
        };
        Ok((
            app,
            Packed {
                identity,
                entitlement,
                index: u32::try_from(i).map_err(|_| too_many())?,
                approval,
                line: self.assignment_lines.get(i).copied().unwrap_or(0),
                granted_at,
                expires_at,
                sha256,
            },
        ))
    }

    /// Validates what waited for the identities, sorts, finds duplicates,
    /// and gives the desired state or every problem in record order.
    fn finish(mut self) -> Result<Desired, Problems> {
        self.identities_read = true;
        for (i, raw) in std::mem::take(&mut self.pending) {
            self.assignment(i, raw);
        }
        // Identities sorted by id; identity and entitlement numbers
        // renumbered in sorted order, so records sort as their strings do.
        drop(self.identity_index);
        // Ids are unique (a second definition is refused above).
        let (identities, identity_rank) =
            crate::strings::sorted_ranked(self.identities, |a: &Identity, b: &Identity| {
                a.id.cmp(&b.id)
            });
        let mut identity_ids = StrList::default();
        for identity in &identities {
            identity_ids.push(&identity.id);
        }
        let (entitlements, entitlement_rank) = crate::strings::ranked(
            self.entitlements
                .into_iter()
                .map(|(name, n)| (n, name))
                .collect(),
            Ord::cmp,
        );
        let mut entitlement_names = StrList::default();
        for name in &entitlements {
            entitlement_names.push(name);
        }
        let mut bad = self.bad;
        let mut writer = AssignmentWriter::new();
        let apps = self.apps;
        let file = self.file;
        let drained = self.incoming.drain(|app, mut records| {
            // The numbers were given here; read back, they are checked.
            let app = apps.get(app as usize).copied().ok_or_else(corrupt)?;
            for r in &mut records {
                r.identity = *identity_rank.get(r.identity as usize).ok_or_else(corrupt)?;
                r.entitlement = *entitlement_rank
                    .get(r.entitlement as usize)
                    .ok_or_else(corrupt)?;
            }
            records.sort_unstable_by_key(|r| (r.identity, r.entitlement, r.index));
            // In place: a listing equal to the one kept before it is a
            // duplicate (the first listing, with the smaller index, counts).
            records.dedup_by(|later, first| {
                let twice =
                    (later.identity, later.entitlement) == (first.identity, first.entitlement);
                if twice {
                    let i = later.index;
                    bad.push((
                        i as usize,
                        RecordError::at_path(
                            file,
                            format!("assignments[{i}]"),
                            format!(
                                "assignment of `{}` to `{}` in `{}` is listed twice",
                                // Ranks index the tables built just above.
                                entitlement_names
                                    .get(later.entitlement as usize)
                                    .unwrap_or_default(),
                                identity_ids
                                    .get(later.identity as usize)
                                    .unwrap_or_default(),
                                app
                            ),
                        ),
                    ));
                }
                twice
            });
            writer.add(app, &records)
        });
        // The records' temporary files failed (written, or read back).
        let spool_failed = |e: std::io::Error| {
            RecordError::in_file(
                file,
                format!("cannot keep the assignments in a temporary file: {e}"),
            )
        };
        let mut problems = self.problems;
        if let Err(e) = drained {
            problems.push(spool_failed(e));
        }
        // Problems in the order of the records, as they were met.
        bad.sort_by_key(|(i, _)| *i);
        for (_, e) in bad {
            problems.push(e);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        identity_ids.shrink_to_fit();
        entitlement_names.shrink_to_fit();
        let mut approvals = self.approvals;
        approvals.shrink_to_fit();
        let assignments = writer
            .finish(self.file_ref, identity_ids, entitlement_names, approvals)
            .map_err(|e| {
                let mut p = Problems::default();
                p.push(spool_failed(e));
                p
            })?;
        Ok(Desired {
            identities,
            assignments,
        })
    }
}

/// The fields of a desired-state document.
const FIELDS: &[&str] = &["exported_at", "identities", "assignments"];

/// The document's keys as they are met: each of [`FIELDS`] at most once,
/// nothing else, and `identities` required. Both readers of a document,
/// [`Document`] and [`read_pieces`], check its shape here.
#[derive(Default)]
struct Shape {
    seen: [bool; FIELDS.len()],
}

/// What is wrong with a key.
enum BadKey {
    /// It is not one of [`FIELDS`].
    Unknown,
    /// It was met before.
    Twice(&'static str),
}

impl Shape {
    /// The position in [`FIELDS`] of `key`, met for the first time.
    fn field(&mut self, key: &str) -> Result<usize, BadKey> {
        let field = FIELDS
            .iter()
            .position(|f| *f == key)
            .ok_or(BadKey::Unknown)?;
        if std::mem::replace(&mut self.seen[field], true) {
            return Err(BadKey::Twice(FIELDS[field]));
        }
        Ok(field)
    }

    /// Whether the required `identities` was met.
    fn complete(&self) -> bool {
        self.seen[1]
    }
}

/// The whole document: a map of [`FIELDS`] (unknown ones rejected, each at
/// most once, `identities` required), read into a [`Builder`].
struct Document<'f>(Builder<'f>);

impl<'a, 'f> DeserializeSeed<'a> for Document<'f> {
    type Value = Builder<'f>;

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_struct("desired state", FIELDS, self)
    }
}

impl<'a, 'f> Visitor<'a> for Document<'f> {
    type Value = Builder<'f>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a desired-state document (a map with `identities` and `assignments`)")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut b = self.0;
        let mut shape = Shape::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'a, str>>()? {
            let field = shape.field(&key).map_err(|bad| match bad {
                BadKey::Unknown => de::Error::unknown_field(&key, FIELDS),
                BadKey::Twice(name) => de::Error::duplicate_field(name),
            })?;
            match field {
                0 => b.exported_at(map.next_value()?),
                1 => {
                    map.next_value_seed(List::<RawIdentity, _>::new(
                        &mut b,
                        |b: &mut Builder<'_>, i, r| b.identity(i, r),
                    ))?;
                    b.identities_read = true;
                }
                _ => map.next_value_seed(List::<RawAssignment<'a>, _>::new(
                    &mut b,
                    |b: &mut Builder<'_>, i, r| b.assignment(i, r),
                ))?,
            }
        }
        if !shape.complete() {
            return Err(de::Error::missing_field("identities"));
        }
        Ok(b)
    }
}

/// A list whose items are handed to the builder one by one, with their
/// positions, as they are parsed.
struct List<'b, 'f, T, F> {
    builder: &'b mut Builder<'f>,
    each: F,
    item: std::marker::PhantomData<T>,
}

impl<'b, 'f, T, F> List<'b, 'f, T, F> {
    fn new(builder: &'b mut Builder<'f>, each: F) -> Self {
        List {
            builder,
            each,
            item: std::marker::PhantomData,
        }
    }
}

impl<'a, T, F> DeserializeSeed<'a> for List<'_, '_, T, F>
where
    T: de::Deserialize<'a>,
    F: FnMut(&mut Builder<'_>, usize, T),
{
    type Value = ();

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'a, T, F> Visitor<'a> for List<'_, '_, T, F>
where
    T: de::Deserialize<'a>,
    F: FnMut(&mut Builder<'_>, usize, T),
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<S: SeqAccess<'a>>(mut self, mut seq: S) -> Result<(), S::Error> {
        let mut i = 0;
        while let Some(item) = seq.next_element::<T>()? {
            (self.each)(self.builder, i, item);
            i += 1;
        }
        Ok(())
    }
}

fn validate_identity(
    file: &str,
    // Where the record is (`identities[3]`), formatted only when an error
    // names it.
    at: std::fmt::Arguments<'_>,
    raw: RawIdentity,
    applications: &FastMap<&str, u32>,
    source: SourceRef,
) -> Result<Identity, RecordError> {
    if raw.id.trim().is_empty() {
        return Err(RecordError::at_path(
            file,
            format!("{at}.id"),
            "identity id is empty",
        ));
    }
    if raw.kind != IdentityKind::Human && raw.owner.as_deref().is_none_or(str::is_empty) {
        return Err(RecordError::at_path(
            file,
            format!("{at}.owner"),
            format!(
                "non-human identity `{}` ({}) has no owner",
                raw.id,
                raw.kind.as_str()
            ),
        )
        .with_help("every service account, API key, bot and workload needs an accountable owner"));
    }
    for app in raw.accounts.keys() {
        if !applications.contains_key(app.as_str()) {
            return Err(RecordError::at_path(
                file,
                format!("{at}.accounts.{app}"),
                format!("unknown application `{app}` (not in `collection.yaml`)"),
            ));
        }
    }
    Ok(Identity {
        id: raw.id,
        display_name: raw.display_name,
        kind: raw.kind,
        owner: raw.owner,
        status: raw.status,
        accounts: raw.accounts,
        source,
    })
}

/// The SHA-256 of `record`'s canonical JSON form (fields in declaration
/// order, maps sorted by key, no whitespace), serialized into `buf` (reused
/// from record to record).
fn canonical_digest<T: serde::Serialize>(buf: &mut Vec<u8>, record: &T) -> Sha256Digest {
    buf.clear();
    // Serializing plain records into memory cannot fail; if it ever did, the
    // digest of the empty form would still be stable.
    if serde_json::to_writer(&mut *buf, record).is_err() {
        buf.clear();
    }
    Sha256Digest::of(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> BTreeSet<String> {
        ["crm".to_owned()].into()
    }

    const GOOD: &str = "\
identities:
  - id: alice
    kind: human
    status: active
  - id: svc-backup
    kind: service_account
    owner: alice
    status: active
    accounts:
      crm: backup-bot
assignments:
  - identity: alice
    application: crm
    entitlement: admin
    granted_at: 2026-01-01T00:00:00Z
  - identity: svc-backup
    application: crm
    entitlement: reader
    granted_at: 2026-01-01T00:00:00Z
    expires_at: 2026-12-01T00:00:00Z
";

    #[test]
    fn parses_and_points_at_lines() {
        let d = parse("desired.yaml", GOOD, &apps()).unwrap();
        assert_eq!(d.identities.len(), 2);
        assert_eq!(d.identities[0].source.line, 2);
        assert_eq!(d.identities[1].source.line, 5);
        let assignments = d.assignments.all().unwrap();
        assert_eq!(assignments[0].source.line, 12);
        assert_eq!(assignments[1].source.line, 16);
        assert_eq!(d.identities[1].accounts["crm"], "backup-bot");
    }

    #[test]
    fn reports_every_bad_record() {
        let text = "\
identities:
  - id: alice
    kind: human
    status: active
  - id: alice
    kind: human
    status: active
  - id: bot1
    kind: bot
    status: active
assignments:
  - identity: nobody
    application: crm
    entitlement: admin
    granted_at: 2026-01-01T00:00:00Z
  - identity: alice
    application: erp
    entitlement: admin
    granted_at: 2026-01-01T00:00:00Z
  - identity: alice
    application: crm
    entitlement: admin
    granted_at: yesterday
";
        let p = parse("d.yaml", text, &apps()).unwrap_err();
        let err = p.into_result("d.yaml").unwrap_err();
        let shown = format!("{:?}", miette::Report::new(err));
        for needle in [
            "identity `alice` is defined twice",
            "identities[2].owner",
            "unknown identity `nobody`",
            "unknown application `erp`",
            "assignments[2].granted_at",
        ] {
            assert!(shown.contains(needle), "missing {needle}: {shown}");
        }
    }

    #[test]
    fn unknown_kind_is_an_error_with_location() {
        let text = "identities:\n  - id: a\n    kind: robot\n    status: active\n";
        let p = parse("d.yaml", text, &apps()).unwrap_err();
        let err = p.into_result("d.yaml").unwrap_err();
        let shown = format!("{:?}", miette::Report::new(err));
        assert!(shown.contains("d.yaml:3:"), "{shown}");
        assert!(shown.contains("identities[0].kind"), "{shown}");
    }

    /// The problems `text` gives, as shown to a user.
    fn refused(file: &str, text: &str) -> String {
        let p = parse(file, text, &apps()).unwrap_err();
        let err = p.into_result(file).unwrap_err();
        format!("{:?}", miette::Report::new(err))
    }

    const GOOD_JSON: &str = r#"{
  "exported_at": "2026-01-02T00:00:00Z",
  "identities": [
    {"id": "svc-backup", "kind": "service_account", "owner": "alice", "status": "active", "accounts": {"crm": "backup-bot"}},
    {"id": "alice", "kind": "human", "status": "active"}
  ],
  "assignments": [
    {"identity": "svc-backup", "application": "crm", "entitlement": "reader", "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2026-12-01T00:00:00Z"},
    {"identity": "alice", "application": "crm", "entitlement": "admin", "granted_at": "2026-01-01T00:00:00Z", "approval": "APR-1"},
    {"identity": "alice", "application": "crm", "entitlement": "a\u00efd", "granted_at": "2026-01-01T00:00:00+02:00"}
  ]
}"#;

    #[test]
    fn json_and_yaml_give_the_same_records_and_digests() {
        let yaml = parse("desired.yaml", GOOD, &apps()).unwrap();
        let json = parse("desired.json", GOOD_JSON, &apps()).unwrap();
        // Same identities (ids sorted), same digests of the same records.
        let ids = |d: &Desired| {
            d.identities
                .iter()
                .map(|i| (i.id.clone(), i.source.sha256))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&yaml), ids(&json));
        let (y, j) = (
            yaml.assignments.all().unwrap(),
            json.assignments.all().unwrap(),
        );
        // Sorted by (identity, entitlement) whatever the listing order; an
        // escaped string is unescaped; the approval and expiry survive
        // packing.
        let keys: Vec<_> = j
            .iter()
            .map(|a| (a.identity.as_str(), a.entitlement.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("alice", "admin"),
                ("alice", "a\u{ef}d"),
                ("svc-backup", "reader")
            ]
        );
        assert_eq!(j[0].approval.as_deref(), Some("APR-1"));
        assert_eq!(j[1].approval, None);
        assert_eq!(j[1].granted_at.to_rfc3339(), "2025-12-31T22:00:00+00:00");
        assert_eq!(
            j[2].expires_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-12-01T00:00:00+00:00")
        );
        assert!(j
            .iter()
            .all(|a| a.source.line == 0 && &*a.source.file == "desired.json"));
        let digest = |v: &[crate::ingest::model::Assignment], id: &str| {
            v.iter().find(|a| a.identity == id).map(|a| a.source.sha256)
        };
        assert_eq!(digest(&y, "svc-backup"), digest(&j, "svc-backup"));
        assert_eq!(json.assignments.of_application("crm").unwrap(), j);
        assert!(json.assignments.of_application("erp").unwrap().is_empty());
    }

    #[test]
    fn assignments_before_identities_are_checked_against_all_identities() {
        let text = r#"{"assignments": [
            {"identity": "alice", "application": "crm", "entitlement": "admin", "granted_at": "2026-01-01T00:00:00Z"},
            {"identity": "nobody", "application": "crm", "entitlement": "admin", "granted_at": "2026-01-01T00:00:00Z"}
          ],
          "identities": [{"id": "alice", "kind": "human", "status": "active"}]}"#;
        let shown = refused("d.json", text);
        assert!(shown.contains("assignments[1].identity"), "{shown}");
        assert!(shown.contains("unknown identity `nobody`"), "{shown}");
        assert!(!shown.contains("assignments[0]"), "{shown}");
    }

    #[test]
    fn duplicates_are_reported_in_record_order_after_identity_problems() {
        let text = "\
identities:
  - id: alice
    kind: human
    status: active
  - id: bot1
    kind: bot
    status: active
assignments:
  - identity: alice
    application: crm
    entitlement: admin
    granted_at: 2026-01-01T00:00:00Z
  - identity: alice
    application: crm
    entitlement: reader
    granted_at: soon
  - identity: alice
    application: crm
    entitlement: admin
    granted_at: 2026-02-01T00:00:00Z
";
        let shown = refused("d.yaml", text);
        let at = |needle: &str| {
            shown
                .find(needle)
                .unwrap_or_else(|| panic!("missing {needle}: {shown}"))
        };
        assert!(
            at("identities[1].owner") < at("assignments[1].granted_at"),
            "{shown}"
        );
        assert!(
            at("assignments[1].granted_at") < at("assignments[2]: "),
            "{shown}"
        );
        assert!(
            shown.contains("assignment of `admin` to `alice` in `crm`"),
            "{shown}"
        );
        assert!(shown.contains("listed twice"), "{shown}");
        assert!(shown.contains("has 3 invalid records"), "{shown}");
    }

    #[test]
    fn the_document_shape_is_enforced() {
        for (text, needle) in [
            (
                r#"{"identities": [], "identities": []}"#,
                "duplicate field `identities`",
            ),
            (r#"{"identities": [], "extra": 1}"#, "unknown field `extra`"),
            (r#"{"assignments": []}"#, "missing field `identities`"),
            (r#"{"identities": null}"#, "expected a sequence"),
            (r#"[1, 2]"#, "expected a desired-state document"),
            (
                r#"{"identities": [{"id": "a", "kind": "human", "status": "active", "x": 1}]}"#,
                "identities[0]",
            ),
            (r#"{"identities": []} trailing"#, "trailing characters"),
        ] {
            let shown = refused("d.json", text);
            assert!(shown.contains(needle), "{text}: missing {needle}: {shown}");
        }
        let shown = refused("d.yaml", "identities: []\nidentities: []\n");
        assert!(shown.contains("duplicate"), "{shown}");
    }

    #[test]
    fn a_json_stream_gives_what_its_text_gives() {
        let whole = parse("desired.json", GOOD_JSON, &apps()).unwrap();
        let streamed = parse_json_stream(
            "desired.json",
            GOOD_JSON.as_bytes(),
            || Ok(GOOD_JSON.as_bytes()),
            &apps(),
        )
        .unwrap();
        assert_eq!(whole.identities, streamed.identities);
        assert_eq!(
            whole.assignments.all().unwrap(),
            streamed.assignments.all().unwrap()
        );
        // A bad value is named by its path, line and text, read again.
        let bad = GOOD_JSON.replace("\"kind\": \"human\"", "\"kind\": 7");
        let refused = |text: &str| {
            let p = parse_json_stream("d.json", text.as_bytes(), || Ok(text.as_bytes()), &apps())
                .unwrap_err();
            format!(
                "{:?}",
                miette::Report::new(p.into_result("d.json").unwrap_err())
            )
        };
        let shown = refused(&bad);
        assert!(shown.contains("identities[1].kind"), "{shown}");
        assert!(shown.contains("d.json:5:"), "{shown}");
        assert!(shown.contains(r#"{"id": "alice", "kind": 7"#), "{shown}");
        let shown = refused(&format!("{GOOD_JSON} x"));
        assert!(shown.contains("trailing characters"), "{shown}");
    }

    /// How a parse came out, to compare two parsers by.
    fn outcome(parsed: Result<Desired, Problems>) -> String {
        match parsed {
            Ok(d) => format!("{:?} {:?}", d.identities, d.assignments.all().unwrap()),
            Err(p) => format!("{p:?}"),
        }
    }

    #[test]
    fn reading_in_pieces_gives_what_the_stream_gives() {
        let stream = parse_json_stream(
            "desired.json",
            GOOD_JSON.as_bytes(),
            || Ok(GOOD_JSON.as_bytes()),
            &apps(),
        );
        let pieces = parse_json_pieces("desired.json", GOOD_JSON.as_bytes(), &apps()).unwrap();
        assert_eq!(outcome(pieces), outcome(stream));
        // What fails to parse is left to the stream parser, which says where.
        for bad in [
            GOOD_JSON.replace("\"kind\": \"human\"", "\"kind\": 7"),
            format!("{GOOD_JSON} x"),
            GOOD_JSON.replacen('{', "[", 1),
            GOOD_JSON.replace("\"identities\"", "\"people\""),
            GOOD_JSON.replace("}},\n", "}}\n"),
        ] {
            assert!(parse_json_pieces("d.json", bad.as_bytes(), &apps()).is_none());
        }
    }

    mod pieces {
        use super::*;
        use crate::ingest::json_split::tests::Trickle;
        use proptest::prelude::*;

        /// Text that JSON escapes, or that looks like its structure.
        fn text() -> impl Strategy<Value = String> {
            let bits = vec![
                "a", "b", "\"", "\\", "]", "}", ",", ":", "é", "😀", "\n", " ", "{", "[",
            ];
            prop::collection::vec(prop::sample::select(bits), 0..5).prop_map(|v| v.concat())
        }

        fn ws() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec!["", " ", "\n", "\t", "\r\n"]),
                0..3,
            )
            .prop_map(|v| v.concat())
        }

        /// An object of `fields` (key, JSON value) in order or reversed,
        /// with whitespace around every token.
        fn object(mut fields: Vec<(&str, String)>, reverse: bool, ws: &[String]) -> String {
            if reverse {
                fields.reverse();
            }
            let w = |i: usize| ws[i % ws.len()].as_str();
            let members: Vec<String> = fields
                .iter()
                .enumerate()
                .map(|(i, (k, v))| format!("{}{k:?}{}:{}{v}{}", w(i), w(i + 1), w(i + 2), w(i + 3)))
                .collect();
            format!("{{{}{}}}", members.join(","), w(fields.len()))
        }

        fn json(s: &str) -> String {
            serde_json::to_string(s).unwrap()
        }

        fn identity() -> impl Strategy<Value = Vec<(&'static str, String)>> {
            (
                prop_oneof![Just("alice".to_owned()), Just("bob".to_owned()), text()],
                prop::sample::select(vec!["human", "bot", "service_account"]),
                prop::option::of(prop_oneof![Just("alice".to_owned()), text()]),
                prop::option::of(text()),
                prop::option::of(prop::sample::select(vec!["crm", "nope"])),
            )
                .prop_map(|(id, kind, owner, name, account)| {
                    let mut f = vec![
                        ("id", json(&id)),
                        ("kind", json(kind)),
                        ("status", json("active")),
                    ];
                    if let Some(o) = owner {
                        f.push(("owner", json(&o)));
                    }
                    if let Some(n) = name {
                        f.push(("display_name", json(&n)));
                    }
                    if let Some(a) = account {
                        f.push(("accounts", format!("{{{}: \"x\"}}", json(a))));
                    }
                    f
                })
        }

        fn assignment() -> impl Strategy<Value = Vec<(&'static str, String)>> {
            (
                prop::sample::select(vec!["alice", "bob", "ghost"]),
                prop::sample::select(vec!["crm", "crm", "nope"]),
                prop_oneof![Just("admin".to_owned()), text()],
                prop::sample::select(vec!["2026-01-01T00:00:00Z", "yesterday"]),
                prop::option::of(prop::sample::select(vec![
                    "2026-12-01T00:00:00Z",
                    "2025-01-01T00:00:00Z",
                ])),
                prop::option::of(text()),
            )
                .prop_map(|(who, app, ent, granted, expires, approval)| {
                    let mut f = vec![
                        ("identity", json(who)),
                        ("application", json(app)),
                        ("entitlement", json(&ent)),
                        ("granted_at", json(granted)),
                    ];
                    if let Some(e) = expires {
                        f.push(("expires_at", json(e)));
                    }
                    if let Some(a) = approval {
                        f.push(("approval", json(&a)));
                    }
                    f
                })
        }

        prop_compose! {
            /// A desired-state document: its top-level fields in any order,
            /// records that are valid or not (but always of the right
            /// types), any whitespace.
            fn document()(
                identities in prop::collection::vec((identity(), any::<bool>()), 0..5),
                assignments in prop::option::of(prop::collection::vec((assignment(), any::<bool>()), 0..6)),
                exported in prop::option::of(prop_oneof![Just("null".to_owned()), Just(json("2026-01-01T00:00:00Z")), Just(json("soon"))]),
                order in prop::sample::select(vec![[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]]),
                ws in prop::collection::vec(ws(), 1..6),
            ) -> String {
                let list = |items: Vec<String>| format!("[{}{}]", ws[0], items.join(&format!("{},{}", ws[ws.len() - 1], ws[0])));
                let ids = list(identities.into_iter().map(|(f, r)| object(f, r, &ws)).collect());
                let mut fields = Vec::new();
                for i in order {
                    match i {
                        0 => if let Some(e) = &exported { fields.push(("exported_at", e.clone())) },
                        1 => fields.push(("identities", ids.clone())),
                        _ => if let Some(a) = &assignments {
                            fields.push(("assignments", list(a.iter().map(|(f, r)| object(f.clone(), *r, &ws)).collect())));
                        },
                    }
                }
                format!("{}{}{}", ws[0], object(fields, false, &ws), ws[ws.len() - 1])
            }
        }

        fn stream(text: &str) -> Result<Desired, Problems> {
            parse_json_stream("d.json", text.as_bytes(), || Ok(text.as_bytes()), &apps())
        }

        fn pieces(text: &str, step: usize) -> Option<Result<Desired, Problems>> {
            let reader = Trickle {
                data: text.as_bytes(),
                step,
            };
            parse_json_pieces("d.json", reader, &apps())
        }

        proptest! {
            #[test]
            fn a_document_read_in_pieces_gives_what_the_stream_gives(
                doc in document(),
                step in prop_oneof![1usize..8, Just(usize::MAX)],
            ) {
                let read = pieces(&doc, step);
                prop_assert!(read.is_some(), "{doc}");
                prop_assert_eq!(outcome(read.unwrap()), outcome(stream(&doc)), "{}", doc);
            }

            #[test]
            fn a_damaged_document_read_in_pieces_gives_what_the_stream_gives_or_nothing(
                doc in document(),
                at in any::<prop::sample::Index>(),
                edit in prop::sample::select(vec!["", ",", "]", "}", "{", "[", "\"", ":", "\\", "x", "1", "null"]),
                step in prop_oneof![1usize..8, Just(usize::MAX)],
            ) {
                // Delete one byte of the structure (or of a string's
                // quotes), or put something in its place.
                let mut bytes = doc.into_bytes();
                let structural: Vec<usize> = (0..bytes.len())
                    .filter(|&i| b"{}[],:\"".contains(&bytes[i]))
                    .collect();
                let i = structural[at.index(structural.len())];
                bytes.splice(i..=i, edit.bytes());
                let Ok(doc) = String::from_utf8(bytes) else { return Ok(()) };
                match pieces(&doc, step) {
                    Some(read) => prop_assert_eq!(outcome(read), outcome(stream(&doc)), "{}", doc),
                    None => prop_assert!(stream(&doc).is_err(), "{}", doc),
                }
            }
        }
    }
}
