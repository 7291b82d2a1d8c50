//! The in-toto attestation of a pack: an in-toto Statement v1 wrapped in a
//! DSSE envelope (`attestation.dsse.json`), and the raw manifest signature
//! (`manifest.sig`).
//!
//! Input: the exact bytes of `manifest.json`, the pack's file digests, the
//! caller's predicate and a key. Output: the bytes of the two signature files.
//!
//! # What is signed, exactly
//!
//! A pack carries two independent Ed25519 (RFC 8032, pure, no pre-hash)
//! signatures by the same key:
//!
//! 1. `manifest.sig`: the raw 64-byte signature over the bytes of
//!    `manifest.json` exactly as they are stored in the pack (no
//!    canonicalisation; see [`super::manifest`] for how they are produced).
//!    OpenSSL ≥ 3.0 checks it with
//!    `openssl pkeyutl -verify -pubin -inkey signer.pub.pem -rawin -in manifest.json -sigfile manifest.sig`.
//! 2. `attestation.dsse.json`: a [DSSE v1](https://github.com/secure-systems-lab/dsse/blob/master/protocol.md)
//!    envelope
//!    `{"payloadType": "application/vnd.in-toto+json", "payload": BASE64(STATEMENT), "signatures": [{"keyid": KEY_ID, "sig": BASE64(SIG)}]}`
//!    where SIG signs the pre-authentication encoding
//!    `PAE = "DSSEv1" SP LEN(type) SP type SP LEN(STATEMENT) SP STATEMENT`
//!    (lengths are byte counts in ASCII decimal, SP is one space, base64 is
//!    the standard alphabet with padding). STATEMENT is the compact JSON of
//!    `{"_type": "https://in-toto.io/Statement/v1", "subject": [...],
//!    "predicateType": "https://syncproof.dev/assessment/v1", "predicate": ...}`
//!    whose subjects are `manifest.json` followed by every file the manifest
//!    lists (sorted by path), each with `{"sha256": HEX}`. The verifier decodes
//!    the payload and checks the signature over those bytes; it never
//!    re-serialises the statement.
//!
//! The envelope file itself is pretty-printed JSON plus a newline; its layout
//! is not signed (only the payload is), which is how DSSE is designed.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::keys::{PrivateKey, PublicKey};

/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a syncproof assessment.
pub const PREDICATE_TYPE: &str = "https://syncproof.dev/assessment/v1";

/// Errors building or checking an envelope.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DsseError {
    /// Serialising failed (not expected).
    #[error("cannot serialise the attestation: {reason}")]
    #[diagnostic(code(syncproof::dsse::serialise))]
    Serialise {
        /// What went wrong.
        reason: String,
    },
    /// The envelope is not valid JSON of the expected shape.
    #[error("envelope is not valid: {reason}")]
    #[diagnostic(code(syncproof::dsse::invalid))]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The envelope's `payloadType` is not [`PAYLOAD_TYPE`].
    #[error("envelope payload type is `{found}`, expected `{PAYLOAD_TYPE}`")]
    #[diagnostic(code(syncproof::dsse::payload_type))]
    PayloadType {
        /// What the envelope says.
        found: String,
    },
    /// No signature in the envelope names the pinned key id.
    #[error("envelope has no signature with key id `{expected}` (found: {found})")]
    #[diagnostic(code(syncproof::dsse::key_id))]
    NoSignatureForKey {
        /// The pinned key id.
        expected: String,
        /// The key ids the envelope names, comma-separated.
        found: String,
    },
    /// The signature with the pinned key id does not verify.
    #[error("signature does not verify with the given public key")]
    #[diagnostic(code(syncproof::dsse::signature))]
    BadSignature,
    /// The payload is not a valid in-toto Statement v1 for syncproof.
    #[error("statement is not valid: {reason}")]
    #[diagnostic(code(syncproof::dsse::statement))]
    Statement {
        /// What is wrong.
        reason: String,
    },
}

/// One subject of a statement: a file name and its digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The file's path relative to the pack root.
    pub name: String,
    /// Algorithm name to lowercase hex digest; syncproof writes `sha256`.
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The files attested.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The assessment, as the caller supplied it.
    pub predicate: serde_json::Value,
}

impl Statement {
    /// Builds a statement over `(name, sha256 hex)` subjects.
    pub fn new(
        subjects: impl IntoIterator<Item = (String, String)>,
        predicate: serde_json::Value,
    ) -> Self {
        Self {
            statement_type: STATEMENT_TYPE.into(),
            subject: subjects
                .into_iter()
                .map(|(name, sha256)| Subject {
                    name,
                    digest: BTreeMap::from([("sha256".to_string(), sha256)]),
                })
                .collect(),
            predicate_type: PREDICATE_TYPE.into(),
            predicate,
        }
    }
}

/// One DSSE signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The signing key's id.
    pub keyid: String,
    /// Base64 of the 64-byte Ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the statement bytes.
    pub payload: String,
    /// The signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// The DSSE v1 pre-authentication encoding of a payload.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Serialises `statement` compactly and signs it into envelope bytes (pretty
/// JSON plus a newline).
pub fn sign_statement(statement: &Statement, key: &PrivateKey) -> Result<Vec<u8>, DsseError> {
    let payload = serde_json::to_vec(statement).map_err(|e| DsseError::Serialise {
        reason: e.to_string(),
    })?;
    let sig = key.sign(&pae(PAYLOAD_TYPE, &payload));
    let envelope = Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: STANDARD.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: key.key_id().to_string(),
            sig: STANDARD.encode(sig),
        }],
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(|e| DsseError::Serialise {
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parses envelope bytes, verifies the signature made by `key` (matched by key
/// id) over the PAE, and returns the statement it carries.
///
/// Nothing in the payload is looked at before the signature verifies.
pub fn verify_envelope(bytes: &[u8], key: &PublicKey) -> Result<Statement, DsseError> {
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| DsseError::Invalid {
        reason: e.to_string(),
    })?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(DsseError::PayloadType {
            found: envelope.payload_type,
        });
    }
    let expected = key.key_id().as_str();
    let Some(signature) = envelope.signatures.iter().find(|s| s.keyid == expected) else {
        let found: Vec<&str> = envelope
            .signatures
            .iter()
            .map(|s| s.keyid.as_str())
            .collect();
        return Err(DsseError::NoSignatureForKey {
            expected: expected.to_string(),
            found: if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            },
        });
    };
    let payload = STANDARD
        .decode(envelope.payload.as_bytes())
        .map_err(|_| DsseError::BadSignature)?;
    let sig = STANDARD
        .decode(signature.sig.as_bytes())
        .map_err(|_| DsseError::BadSignature)?;
    key.verify(&pae(&envelope.payload_type, &payload), &sig)
        .map_err(|_| DsseError::BadSignature)?;
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| DsseError::Statement {
            reason: e.to_string(),
        })?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(DsseError::Statement {
            reason: format!("`_type` is `{}`", statement.statement_type),
        });
    }
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(DsseError::Statement {
            reason: format!("`predicateType` is `{}`", statement.predicate_type),
        });
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from_seed(&[seed; 32]).unwrap()
    }

    fn statement() -> Statement {
        Statement::new(
            [("manifest.json".to_string(), "00".repeat(32))],
            serde_json::json!({"findings": 0}),
        )
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // https://github.com/secure-systems-lab/dsse/blob/master/protocol.md#test-vectors
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let k = key(1);
        let bytes = sign_statement(&statement(), &k).unwrap();
        assert_eq!(
            verify_envelope(&bytes, &k.public_key()).unwrap(),
            statement()
        );
        let env: Envelope = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(env.signatures[0].keyid, k.key_id().as_str());
    }

    #[test]
    fn wrong_key_fails_on_key_id() {
        let bytes = sign_statement(&statement(), &key(1)).unwrap();
        let err = verify_envelope(&bytes, &key(2).public_key()).unwrap_err();
        assert!(matches!(err, DsseError::NoSignatureForKey { .. }), "{err}");
    }

    #[test]
    fn relabelled_key_id_still_fails_on_signature() {
        let bytes = sign_statement(&statement(), &key(1)).unwrap();
        let other = key(2).public_key();
        let mut env: Envelope = serde_json::from_slice(&bytes).unwrap();
        env.signatures[0].keyid = other.key_id().to_string();
        let bytes = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            verify_envelope(&bytes, &other),
            Err(DsseError::BadSignature)
        ));
    }

    #[test]
    fn changed_payload_or_type_fails() {
        let k = key(1);
        let bytes = sign_statement(&statement(), &k).unwrap();
        let env: Envelope = serde_json::from_slice(&bytes).unwrap();

        let mut changed = env.clone();
        let mut other = statement();
        other.predicate = serde_json::json!({"findings": 1});
        changed.payload = STANDARD.encode(serde_json::to_vec(&other).unwrap());
        let out = serde_json::to_vec(&changed).unwrap();
        assert!(matches!(
            verify_envelope(&out, &k.public_key()),
            Err(DsseError::BadSignature)
        ));

        let mut changed = env.clone();
        changed.payload_type = "application/json".into();
        let out = serde_json::to_vec(&changed).unwrap();
        assert!(matches!(
            verify_envelope(&out, &k.public_key()),
            Err(DsseError::PayloadType { .. })
        ));

        let mut changed = env;
        changed.signatures[0].sig = "not base64!".into();
        let out = serde_json::to_vec(&changed).unwrap();
        assert!(matches!(
            verify_envelope(&out, &k.public_key()),
            Err(DsseError::BadSignature)
        ));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let k = key(1).public_key();
        for bytes in [&b""[..], b"{}", b"[]", b"\xff\xfe", b"{\"payloadType\":1}"] {
            assert!(verify_envelope(bytes, &k).is_err());
        }
    }

    #[test]
    fn signed_statement_with_wrong_types_is_rejected() {
        let k = key(1);
        let mut s = statement();
        s.predicate_type = "https://example.com/other".into();
        let bytes = sign_statement(&s, &k).unwrap();
        assert!(matches!(
            verify_envelope(&bytes, &k.public_key()),
            Err(DsseError::Statement { .. })
        ));
        let mut s = statement();
        s.statement_type = "https://in-toto.io/Statement/v0.1".into();
        let bytes = sign_statement(&s, &k).unwrap();
        assert!(matches!(
            verify_envelope(&bytes, &k.public_key()),
            Err(DsseError::Statement { .. })
        ));
    }
}
