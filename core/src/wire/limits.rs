//! Validation of decoded messages against the configured limits (names, tags, member counts,
//! payload sizes), and the encoded sizes the API checks before it accepts a payload.

use super::fast::RawAlive;
use super::message::*;
use super::DecodeError;
use crate::identity::Tags;

/// Limits applied when validating decoded messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_name_len: usize,
    pub meta_max_size: usize,
    pub max_members: usize,
    pub user_event_size_limit: usize,
    pub query_size_limit: usize,
    pub query_response_size_limit: usize,
    pub max_message_size: usize,
    pub event_buffer: usize,
}

impl Limits {
    /// The limits a configuration implies.
    pub(crate) fn from_config(c: &crate::Config) -> Limits {
        Limits {
            max_name_len: c.max_name_len,
            meta_max_size: c.meta_max_size,
            max_members: c.max_members,
            user_event_size_limit: c.user_event_size_limit,
            query_size_limit: c.query_size_limit,
            query_response_size_limit: c.query_response_size_limit,
            max_message_size: c.max_message_size,
            event_buffer: c.event_buffer,
        }
    }
}

/// Size a user event counts against `user_event_size_limit`: name plus payload.
pub(crate) fn user_event_size(name: &str, payload: &[u8]) -> usize {
    name.len() + payload.len()
}

/// Size a query counts against `query_size_limit`: name, payload and filters.
pub(crate) fn query_size(q: &QueryMsg) -> usize {
    q.name.len()
        + q.payload.len()
        + q.filter_nodes.iter().map(|n| n.len()).sum::<usize>()
        + q.filter_tags
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Encoded size of a tag map (postcard: count, then length-prefixed keys and values).
pub(crate) fn tags_encoded_len(tags: &Tags) -> usize {
    varint_len(tags.len())
        + tags
            .iter()
            .map(|(k, v)| varint_len(k.len()) + k.len() + varint_len(v.len()) + v.len())
            .sum::<usize>()
}

impl Limits {
    fn name(&self, name: &str) -> Result<(), DecodeError> {
        self.name_bytes(name.as_bytes())
    }

    fn name_bytes(&self, name: &[u8]) -> Result<(), DecodeError> {
        if name.is_empty() || name.len() > self.max_name_len {
            return Err(DecodeError::Invalid("member name length"));
        }
        Ok(())
    }

    /// What [`Limits::validate`] checks of the alive message `a` stands for (its tags are
    /// empty: one byte encoded).
    pub(super) fn raw_alive(&self, a: &RawAlive<'_>) -> Result<(), DecodeError> {
        self.name_bytes(a.name)?;
        if self.meta_max_size < varint_len(0) {
            return Err(DecodeError::Invalid("tags exceed meta_max_size"));
        }
        Ok(())
    }

    fn tags(&self, tags: &Tags) -> Result<(), DecodeError> {
        if tags_encoded_len(tags) > self.meta_max_size {
            return Err(DecodeError::Invalid("tags exceed meta_max_size"));
        }
        Ok(())
    }

    fn user_event(&self, e: &UserEventMsg) -> Result<(), DecodeError> {
        if e.name.is_empty() || user_event_size(&e.name, &e.payload) > self.user_event_size_limit {
            return Err(DecodeError::Invalid(
                "user event exceeds user_event_size_limit",
            ));
        }
        Ok(())
    }

    /// Check every protocol limit of one decoded message.
    pub(crate) fn validate(&self, msg: &Message) -> Result<(), DecodeError> {
        match msg {
            Message::Ping { target, .. }
            | Message::CheckPing { target, .. }
            | Message::IndirectPing { target, .. }
            | Message::StreamPing { target, .. } => self.name(target),
            Message::Ack { .. } | Message::Nack { .. } => Ok(()),
            Message::Alive(a) => {
                self.name(&a.name)?;
                self.tags(&a.tags)
            }
            Message::Suspect(s) | Message::Dead(s) => {
                self.name(&s.name)?;
                self.name(&s.from)
            }
            Message::PushPull(p) => {
                self.name(&p.sender)?;
                if p.states.len() > self.max_members {
                    return Err(DecodeError::Invalid("push-pull state exceeds max_members"));
                }
                for s in &p.states {
                    self.name(&s.name)?;
                    self.tags(&s.tags)?;
                    if let Some(a) = &s.accuser {
                        self.name(a)?;
                        if s.status != WireStatus::Suspect {
                            return Err(DecodeError::Invalid("accuser on a state not suspect"));
                        }
                        if *a == s.name {
                            return Err(DecodeError::Invalid("a member accuses itself"));
                        }
                    }
                }
                if p.events.len() > 4 * self.event_buffer {
                    return Err(DecodeError::Invalid("push-pull carries too many events"));
                }
                for e in &p.events {
                    self.user_event(e)?;
                }
                Ok(())
            }
            Message::LeaveIntent(i) => self.name(&i.name),
            Message::UserEvent(e) => self.user_event(e),
            Message::Query(q) => {
                self.name(&q.from)?;
                for n in &q.filter_nodes {
                    self.name(n)?;
                }
                if q.name.is_empty() || query_size(q) > self.query_size_limit {
                    return Err(DecodeError::Invalid("query exceeds query_size_limit"));
                }
                Ok(())
            }
            Message::QueryResponse(r) | Message::RelayResponse { resp: r, .. } => {
                self.name(&r.from)?;
                if r.payload.len() > self.query_response_size_limit {
                    return Err(DecodeError::Invalid(
                        "response exceeds query_response_size_limit",
                    ));
                }
                Ok(())
            }
            Message::DirectAck { from, .. } => self.name(from),
            Message::Direct { from, payload } | Message::DirectAcked { from, payload, .. } => {
                self.name(from)?;
                if payload.len() > self.max_message_size {
                    return Err(DecodeError::Invalid("message exceeds max_message_size"));
                }
                Ok(())
            }
        }
    }
}
