//! Cluster-wide key operations, as Serf's key manager: install a key everywhere, make it the
//! primary everywhere, remove it everywhere, or list the keys every member holds. Each is an
//! internal query (name `_rookery/key/<op>`; user queries may not use the `_rookery/` prefix)
//! gossiped to every member and answered by every member inside the core; the asker collects
//! the answers and reports one [`KeyOpResult`] as [`crate::Event::KeyOp`] when every member it
//! knew alive answered, or at the query's deadline.
//!
//! **Why sending a key in a query is safe.** A key operation is refused unless this node seals
//! what it sends (a keyring and `gossip_verify_outgoing`), so the query itself travels sealed
//! with the current primary key, and so does every member's re-gossip of it as long as the
//! cluster seals. On top of that the key inside the query is sealed a second time with the
//! asker's primary key (the operation's name as associated data), so that a member that relays
//! in plaintext during a rolling change never exposes it; answers that list keys are sealed
//! the same way with the answering member's primary key. Whoever holds no key of the cluster
//! learns nothing; whoever holds one could read the traffic anyway.
//!
//! Removing a member's primary key is refused by that member (and locally before asking), as
//! in Serf: make another key primary first.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{KeyringError, Security};
use crate::identity::Name;

/// The name prefix of key-operation queries.
pub(crate) const KEY_QUERY_PREFIX: &str = "_rookery/key/";

/// Associated data of a sealed key-operation answer.
const ANSWER_AAD: &[u8] = b"_rookery/key/answer";

/// A cluster-wide key operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyOp {
    /// Add a key to every member's keyring (as a secondary).
    Install,
    /// Make a key, already installed, every member's primary.
    Use,
    /// Remove a secondary key from every member's keyring.
    Remove,
    /// List every member's keys.
    List,
}

impl KeyOp {
    fn name(self) -> &'static str {
        match self {
            KeyOp::Install => "_rookery/key/install",
            KeyOp::Use => "_rookery/key/use",
            KeyOp::Remove => "_rookery/key/remove",
            KeyOp::List => "_rookery/key/list",
        }
    }

    fn from_name(name: &str) -> Option<KeyOp> {
        [KeyOp::Install, KeyOp::Use, KeyOp::Remove, KeyOp::List]
            .into_iter()
            .find(|op| op.name() == name)
    }
}

/// Identifies one key operation this node started (its query's id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyOpId(pub u32);

/// The outcome of a cluster-wide key operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyOpResult {
    /// Which operation.
    pub id: KeyOpId,
    /// What it did.
    pub op: KeyOp,
    /// Members this node knew alive when it asked (itself included).
    pub members: usize,
    /// Members that answered.
    pub answered: usize,
    /// Members that answered with an error, and the error.
    pub failed: BTreeMap<Name, String>,
    /// For [`KeyOp::List`]: each key (raw bytes) and how many answering members hold it.
    pub keys: BTreeMap<Vec<u8>, usize>,
    /// For [`KeyOp::List`]: each primary key and how many answering members use it.
    pub primary_keys: BTreeMap<Vec<u8>, usize>,
}

impl KeyOpResult {
    /// True when every member known at the start answered, none with an error.
    pub fn complete(&self) -> bool {
        self.answered >= self.members && self.failed.is_empty()
    }
}

/// One member's answer (postcard-encoded; sealed when it lists keys).
#[derive(Serialize, Deserialize)]
struct Answer {
    error: Option<String>,
    keys: Vec<Vec<u8>>,
}

impl Security {
    /// Carry out a key operation a member received on this node's keyring, and bump
    /// [`Security::version`] when it changed (drivers then rewrite their keyring file). Install
    /// adds a secondary key (a held key succeeds unchanged), use makes an installed key the
    /// primary, remove drops a secondary key; a list changes nothing. Both profiles' answers
    /// call this and keep only their answer formats. Without a keyring: [`KeyringError::Empty`].
    pub(crate) fn apply_key_op(&mut self, op: KeyOp, key: &[u8]) -> Result<(), KeyringError> {
        let ring = self.keyring.as_mut().ok_or(KeyringError::Empty)?;
        match op {
            KeyOp::Install => ring.install(key)?,
            KeyOp::Use => ring.use_key(key)?,
            KeyOp::Remove => ring.remove(key)?,
            KeyOp::List => return Ok(()),
        }
        self.version += 1;
        Ok(())
    }
}

/// Operations this node started, collecting answers.
#[derive(Debug, Default)]
pub(crate) struct KeyManager {
    running: BTreeMap<u32, KeyOpResult>,
}

impl KeyManager {
    /// The payload of a request: the key sealed with the primary key (the operation's name as
    /// associated data); empty for a list. `None` without a keyring.
    pub(crate) fn request(
        sec: &mut Security,
        op: KeyOp,
        key: &[u8],
    ) -> Option<(&'static str, Bytes)> {
        if op == KeyOp::List {
            return Some((op.name(), Bytes::new()));
        }
        let sealed = sec.seal_payload(op.name().as_bytes(), key)?;
        Some((op.name(), sealed.into()))
    }

    /// Remember a started operation.
    pub(crate) fn started(&mut self, id: u32, op: KeyOp, members: usize) {
        self.running.insert(
            id,
            KeyOpResult {
                id: KeyOpId(id),
                op,
                members,
                answered: 0,
                failed: BTreeMap::new(),
                keys: BTreeMap::new(),
                primary_keys: BTreeMap::new(),
            },
        );
    }

    /// Carry out a received request on this node's keyring; the answer's payload and whether
    /// the keyring changed. Never panics on a hostile request: anything wrong is an error
    /// answer.
    pub(crate) fn answer(sec: Option<&mut Security>, name: &str, payload: &[u8]) -> (Bytes, bool) {
        let Some(op) = KeyOp::from_name(name) else {
            return (plain_error("unknown key operation"), false);
        };
        let Some(sec) = sec.filter(|s| s.keyring.is_some()) else {
            return (plain_error("no keyring"), false);
        };
        if op == KeyOp::List {
            let keys = sec
                .keyring
                .as_ref()
                .map(|r| r.keys().map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            let answer = Answer { error: None, keys };
            let plain = postcard::to_allocvec(&answer).unwrap_or_default();
            return match sec.seal_payload(ANSWER_AAD, &plain) {
                Some(sealed) => (tagged(1, &sealed), false),
                None => (plain_error("no keyring"), false),
            };
        }
        let Some(key) = sec.open_payload(op.name().as_bytes(), payload) else {
            return (
                plain_error("no key of this member opens the request"),
                false,
            );
        };
        match sec.apply_key_op(op, &key) {
            Ok(()) => {
                let ok = Answer {
                    error: None,
                    keys: Vec::new(),
                };
                (
                    tagged(0, &postcard::to_allocvec(&ok).unwrap_or_default()),
                    true,
                )
            }
            Err(e) => (plain_error(&e.to_string()), false),
        }
    }

    /// Count an answer from `from` to operation `id`.
    pub(crate) fn on_answer(
        &mut self,
        sec: Option<&Security>,
        id: u32,
        from: Name,
        payload: &[u8],
    ) {
        let Some(res) = self.running.get_mut(&id) else {
            return;
        };
        let answer = match payload.split_first() {
            Some((0, rest)) => postcard::from_bytes::<Answer>(rest).ok(),
            Some((1, rest)) => sec
                .and_then(|s| s.open_payload(ANSWER_AAD, rest))
                .and_then(|p| postcard::from_bytes::<Answer>(&p).ok()),
            _ => None,
        };
        let answer = match answer {
            Some(Answer { error: Some(e), .. }) => Err(e),
            Some(Answer { error: None, keys }) => Ok(keys),
            None => Err("unreadable answer".into()),
        };
        count(res, from, answer);
    }

    /// Count an answer from `from` to operation `id` already read (the HashiCorp profile's,
    /// Serf's key response): the member's keys, its primary first, or its error.
    pub(crate) fn on_read_answer(
        &mut self,
        id: u32,
        from: Name,
        answer: Result<Vec<Vec<u8>>, String>,
    ) {
        if let Some(res) = self.running.get_mut(&id) {
            count(res, from, answer);
        }
    }

    /// Operation `id` ended: its result.
    pub(crate) fn done(&mut self, id: u32) -> Option<KeyOpResult> {
        self.running.remove(&id)
    }
}

/// Count one member's answer: its keys (the primary first; a list's) or its error.
fn count(res: &mut KeyOpResult, from: Name, answer: Result<Vec<Vec<u8>>, String>) {
    res.answered += 1;
    let keys = match answer {
        Ok(keys) => keys,
        Err(e) => {
            res.failed.insert(from, e);
            return;
        }
    };
    if res.op == KeyOp::List {
        if let Some(p) = keys.first() {
            *res.primary_keys.entry(p.clone()).or_default() += 1;
        }
        for k in keys {
            *res.keys.entry(k).or_default() += 1;
        }
    }
}

fn tagged(tag: u8, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(tag);
    out.extend_from_slice(body);
    out.into()
}

fn plain_error(e: &str) -> Bytes {
    let a = Answer {
        error: Some(e.to_string()),
        keys: Vec::new(),
    };
    tagged(0, &postcard::to_allocvec(&a).unwrap_or_default())
}

/// Check a key operation locally before asking the cluster: the key must be a valid key, and
/// removing this node's own primary is refused here already.
pub(crate) fn precheck(sec: &Security, op: KeyOp, key: &[u8]) -> Result<(), KeyringError> {
    if op == KeyOp::List {
        return Ok(());
    }
    if !matches!(key.len(), 16 | 24 | 32) {
        return Err(KeyringError::BadKeyLength(key.len()));
    }
    let ring = sec.keyring.as_ref().ok_or(KeyringError::UnknownKey)?;
    match op {
        KeyOp::Remove if ring.primary() == key => Err(KeyringError::RemovePrimary),
        KeyOp::Use | KeyOp::Remove if !ring.contains(key) => Err(KeyringError::UnknownKey),
        _ => Ok(()),
    }
}
