//! Queries: a named request gossiped to every member, stamped with the query Lamport clock and
//! deduplicated by a ring of `query_buffer` slots. Members that the asker's filters select
//! (node names; tag regular expressions, unanchored as in Serf) see [`Event::Query`] and may
//! answer once with [`Node::respond`]; answers go straight to the asker (and through
//! `relay_factor` random members). The asker sees acks, responses and a done event at the
//! deadline — or earlier, as soon as every member its filters select (in its own view at query
//! time) has answered; Serf always waits for the full timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use regex::Regex;

use super::{Outcome, Recorded, Serf, SerfTimer, MAX_PER_SLOT};
use crate::ctx::Cx;
use crate::error::ApiError;
use crate::event::{Event, IncomingQuery, QueryHandle, QueryId, QueryOrigin, QueryParams};
use crate::identity::{MemberStatus, Name, Tags};
use crate::node::SerfKey;
use crate::plausible::MAX_RELAY_FACTOR;
use crate::time::Timestamp;
use crate::timers::TimerKind;
use crate::wire::{self, Message, QueryMsg, QueryResp};

/// Regular expressions of tag filters are compiled with this size limit, so a hostile query
/// cannot make a node build a huge automaton.
const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// A query this node asked.
#[derive(Debug)]
struct Pending {
    ltime: u64,
    /// Members the filters select, as this node saw them when asking.
    expected: BTreeSet<Name>,
    acks: BTreeSet<Name>,
    responses: BTreeSet<Name>,
    /// Set for the internal name-conflict vote: the contested address and the tally.
    conflict: Option<Vote>,
    /// A key operation (`keyring::manager`): answers go to the router, not to events.
    internal: bool,
}

/// A name-conflict vote in progress: which address the members that answered hold for this
/// node's name.
#[derive(Debug)]
struct Vote {
    theirs: SocketAddr,
    for_us: usize,
    for_them: usize,
}

/// The internal query that asks every member which address it holds for a name (Serf's
/// conflict resolution) on the native profile. Answered inside the core; never surfaced as an
/// event. On the HashiCorp profile the vote asks Serf's own query instead
/// ([`crate::wire::hashicorp::CONFLICT_QUERY`]), which serf agents answer too.
const CONFLICT_QUERY: &str = "_rookery/conflict";

/// One dedup slot: a query Lamport time and the (asker, id) pairs seen at it.
type RingSlot = Option<(u64, Vec<(Name, u32)>)>;

/// Query state: the dedup ring, this node's own queries, and the queries it answered.
#[derive(Debug)]
pub(crate) struct Queries {
    /// Allocated on the first query seen.
    ring: Vec<RingSlot>,
    ring_size: usize,
    pending: BTreeMap<u32, Pending>,
    pub(crate) next_id: u32,
    /// (asker, ltime, id) → deadline, for queries this node may still answer once.
    open: BTreeMap<(Name, u64, u32), Timestamp>,
    /// The latest claims of a live member's name from another address that this node saw
    /// (at most [`MAX_CLAIMS`]): a name-conflict vote asked from such an address is answered
    /// there, though it is not the address this node holds for the name.
    claims: std::collections::VecDeque<(Name, SocketAddr)>,
    /// Name-conflict votes that arrived before the claim they are about (the asker's alive
    /// message, which travels separately, may come second), with their deadlines: answered
    /// when the claim arrives in time (at most [`MAX_CLAIMS`]); one that expires or is pushed
    /// out counts as a refused reply (`Stats::replies_refused`).
    unclaimed: std::collections::VecDeque<(QueryMsg, Timestamp)>,
    /// Key-operation queries received, for the router to answer (`keyring::manager`).
    pub(crate) key_inbox: Vec<QueryMsg>,
    /// A name-conflict vote is scheduled ([`Serf::schedule_conflict_vote`]).
    vote_scheduled: bool,
}

/// Probe intervals a name-conflict vote waits: three rounds of the others' address check
/// (`swim::addr_check::TRIES` pings, a probe interval apart, and its news spreading): a node
/// checks only once the claim reaches it, from the claimant or from a node whose check ended,
/// so the last nodes start a round or two after the first (at N=100, everyone has decided
/// within 10 s of a restart at a new address; see BENCHMARKS.md, `moved`).
pub(crate) const CONFLICT_VOTE_DELAY_PROBES: u32 = 3 * (crate::swim::addr_check::TRIES as u32 + 1);

/// How many contested (name, address) claims a node remembers for answering votes.
const MAX_CLAIMS: usize = 16;

impl Queries {
    pub(crate) fn new(size: usize) -> Queries {
        Queries {
            ring: Vec::new(),
            ring_size: size.max(1),
            pending: BTreeMap::new(),
            next_id: 0,
            open: BTreeMap::new(),
            claims: std::collections::VecDeque::new(),
            unclaimed: std::collections::VecDeque::new(),
            key_inbox: Vec::new(),
            vote_scheduled: false,
        }
    }

    /// The id of the latest query this node asked (tests answer it).
    #[cfg(test)]
    pub(crate) fn last_id(&self) -> u32 {
        self.next_id
    }

    /// This node's own queries still collecting answers.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Record a query unless already seen or its slot is full.
    fn insert(&mut self, ltime: u64, from: &Name, id: u32) -> Recorded {
        if self.ring.is_empty() {
            self.ring = vec![None; self.ring_size];
        }
        let i = (ltime % self.ring.len() as u64) as usize;
        match &mut self.ring[i] {
            Some((t, seen)) if *t == ltime => {
                if seen.iter().any(|(f, x)| f == from && *x == id) {
                    return Recorded::Seen;
                }
                if seen.len() >= MAX_PER_SLOT {
                    return Recorded::Full;
                }
                seen.push((from.clone(), id));
            }
            other => *other = Some((ltime, vec![(from.clone(), id)])),
        }
        Recorded::New
    }
}

/// Compiled filters of one query.
struct Filters {
    nodes: Vec<Name>,
    tags: Vec<(String, Regex)>,
}

impl Filters {
    fn compile(nodes: &[Name], tags: &[(String, String)]) -> Result<Filters, String> {
        let tags = tags
            .iter()
            .map(|(k, re)| {
                regex::RegexBuilder::new(re)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map(|r| (k.clone(), r))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Filters {
            nodes: nodes.to_vec(),
            tags,
        })
    }

    fn selects(&self, name: &str, tags: &Tags) -> bool {
        (self.nodes.is_empty() || self.nodes.iter().any(|n| n == name))
            && self
                .tags
                .iter()
                .all(|(k, re)| tags.get(k).is_some_and(|v| re.is_match(v)))
    }
}

impl Serf {
    /// Ask the cluster: the query is gossiped to every member; those `params` selects see
    /// [`Event::Query`]. Answers arrive as [`Event::QueryAck`] and [`Event::QueryResponse`];
    /// [`Event::QueryDone`] ends it.
    pub(crate) fn query(
        &mut self,
        name: &str,
        payload: Bytes,
        params: QueryParams,
        cx: &mut Cx<'_>,
    ) -> Result<QueryId, ApiError> {
        if name.is_empty() {
            return Err(ApiError::EmptyName);
        }
        if self.queries.pending.len() >= cx.cfg.max_pending_queries {
            return Err(ApiError::TooManyQueries);
        }
        if params.relay_factor > MAX_RELAY_FACTOR {
            return Err(ApiError::RelayFactorTooLarge(params.relay_factor));
        }
        let filter_nodes: Vec<Name> = params.filter_nodes.iter().map(Name::new).collect();
        let filters =
            Filters::compile(&filter_nodes, &params.filter_tags).map_err(ApiError::BadFilter)?;
        let timeout = params
            .timeout
            .unwrap_or_else(|| crate::formulas::query_timeout(cx.cfg, cx.members.live()));
        self.queries.next_id = self.queries.next_id.wrapping_add(1);
        let id = self.queries.next_id;
        let ltime = self.query_clock.time();
        let q = QueryMsg {
            ltime,
            id,
            from: cx.me.clone(),
            addr: *cx.addr,
            filter_nodes,
            filter_tags: params.filter_tags.clone(),
            ack: params.request_ack,
            relay_factor: params.relay_factor,
            timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
            name: Name::new(name),
            payload,
        };
        let size = wire::query_size(&q);
        if size > cx.cfg.query_size_limit {
            let limit = cx.cfg.query_size_limit;
            return Err(ApiError::TooLarge {
                what: "query",
                size,
                limit,
            });
        }
        self.query_clock.increment();
        let expected = cx
            .members
            .iter()
            .filter(|r| {
                r.status() == MemberStatus::Alive && filters.selects(&r.name, cx.members.tags(r))
            })
            .map(|r| r.name.to_name())
            .collect();
        let pending = Pending {
            ltime,
            expected,
            acks: BTreeSet::new(),
            responses: BTreeSet::new(),
            conflict: None,
            internal: name.starts_with(crate::keyring::KEY_QUERY_PREFIX)
                || (cx.fx.hc.is_some() && crate::wire::hashicorp::is_key_query(name)),
        };
        self.queries.pending.insert(id, pending);
        cx.fx.timers.schedule(
            cx.now + timeout,
            TimerKind::Serf(SerfTimer::QueryDeadline { id }),
        );
        // The asker is a member too: it may be selected and answer its own query.
        self.on_query(q, cx);
        Ok(QueryId(id))
    }

    /// Answer a query this node was selected by (once, before its deadline).
    pub(crate) fn respond(
        &mut self,
        query: &QueryHandle,
        payload: Bytes,
        cx: &mut Cx<'_>,
    ) -> Result<(), ApiError> {
        if payload.len() > cx.cfg.query_response_size_limit {
            let (size, limit) = (payload.len(), cx.cfg.query_response_size_limit);
            return Err(ApiError::TooLarge {
                what: "response",
                size,
                limit,
            });
        }
        let query = &*query.origin;
        let key = (query.name.clone(), query.ltime, query.id);
        match self.queries.open.get(&key) {
            Some(deadline) if *deadline >= cx.now => {}
            _ => return Err(ApiError::QueryClosed),
        }
        self.queries.open.remove(&key);
        let resp = QueryResp {
            ltime: query.ltime,
            id: query.id,
            from: cx.me.clone(),
            ack: false,
            payload,
        };
        self.send_query_resp(query.addr, query.relay_factor, resp, cx);
        Ok(())
    }

    pub(crate) fn send_query_resp(
        &mut self,
        to: std::net::SocketAddr,
        relay_factor: u8,
        resp: QueryResp,
        cx: &mut Cx<'_>,
    ) {
        if to == *cx.addr {
            // This node answering its own query. A name-conflict vote never ends here (a node
            // does not vote on its own name), so there is nothing for the router to do.
            let out = self.on_query_response(resp, cx);
            debug_assert_eq!(out, Outcome::Nothing);
            return;
        }
        if relay_factor > 0 {
            let relay_factor = relay_factor.min(MAX_RELAY_FACTOR);
            let me = cx.me.clone();
            let relays = cx
                .members
                .random_members(relay_factor as usize, cx.rng, |r| {
                    r.status() == MemberStatus::Alive && r.name != me && r.addr() != to
                });
            let addrs: Vec<_> = relays.iter().map(|&i| cx.members.at(i).addr()).collect();
            for a in addrs {
                cx.send_datagram(
                    a,
                    &[Message::RelayResponse {
                        to,
                        resp: resp.clone(),
                    }],
                );
            }
        }
        cx.send_datagram(to, &[Message::QueryResponse(resp)]);
    }

    /// A live member's name was claimed from `addr` (see `claims`): remembered, and a vote
    /// about that claim that came first is answered now, if still in time.
    pub(crate) fn note_claim(&mut self, name: Name, addr: SocketAddr, cx: &mut Cx<'_>) {
        let claims = &mut self.queries.claims;
        if !claims.iter().any(|(n, a)| *n == name && *a == addr) {
            if claims.len() >= MAX_CLAIMS {
                claims.pop_front();
            }
            claims.push_back((name.clone(), addr));
        }
        if self.queries.unclaimed.is_empty() {
            return;
        }
        let now = cx.now;
        let before = self.queries.unclaimed.len();
        self.queries
            .unclaimed
            .retain(|(_, deadline)| *deadline > now);
        // Expired before their claim arrived: never answered here.
        cx.fx.stats.replies_refused += (before - self.queries.unclaimed.len()) as u64;
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queries.unclaimed)
            .into_iter()
            .partition(|(q, _)| q.from == name && q.addr == addr);
        self.queries.unclaimed = rest.into();
        for (q, _) in due {
            tracing::debug!(asker = %q.from, addr = %q.addr, "name-conflict vote answered once its claim arrived");
            self.answer_vote(&q, cx);
        }
    }

    /// Answer a name-conflict vote, rookery's or Serf's.
    fn answer_vote(&mut self, q: &QueryMsg, cx: &mut Cx<'_>) {
        if &*q.name == CONFLICT_QUERY {
            self.answer_conflict_vote(q, cx);
        } else {
            self.answer_serf_conflict(q, cx);
        }
    }

    /// Another node claims this node's name from `theirs`: ask the cluster which address it
    /// holds for the name (one vote at a time). A single forged packet cannot make a node give
    /// up its name: the members that know it answer with its address.
    /// Ask the cluster about this node's name claimed from `theirs` once the others had time
    /// to check the claimant's address (`swim::addr_check`: [`CONFLICT_VOTE_DELAY_PROBES`]
    /// probe intervals); at most one vote waits or runs at a time.
    pub(crate) fn schedule_conflict_vote(&mut self, theirs: SocketAddr, cx: &mut Cx<'_>) {
        if self.queries.vote_scheduled
            || self.queries.pending.values().any(|p| p.conflict.is_some())
        {
            return;
        }
        self.queries.vote_scheduled = true;
        let at = cx.now + cx.cfg.probe_interval * CONFLICT_VOTE_DELAY_PROBES;
        cx.fx
            .timers
            .schedule(at, TimerKind::Serf(SerfTimer::ConflictVote { theirs }));
    }

    /// The scheduled vote is due.
    pub(crate) fn conflict_vote_due(&mut self, theirs: SocketAddr, cx: &mut Cx<'_>) {
        self.queries.vote_scheduled = false;
        self.start_conflict_vote(theirs, cx);
    }

    pub(crate) fn start_conflict_vote(&mut self, theirs: SocketAddr, cx: &mut Cx<'_>) {
        if self.queries.pending.values().any(|p| p.conflict.is_some()) {
            return;
        }
        self.queries.next_id = self.queries.next_id.wrapping_add(1);
        let id = self.queries.next_id;
        let ltime = self.query_clock.time();
        self.query_clock.increment();
        let timeout = crate::formulas::query_timeout(cx.cfg, cx.members.live());
        let q = QueryMsg {
            ltime,
            id,
            from: cx.me.clone(),
            addr: *cx.addr,
            filter_nodes: Vec::new(),
            filter_tags: Vec::new(),
            ack: false,
            relay_factor: 0,
            timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
            // The profile decides only the query's name and its answers' bytes; the vote and
            // its tally are the same.
            name: Name::new(if cx.fx.hc.is_some() {
                crate::wire::hashicorp::CONFLICT_QUERY
            } else {
                CONFLICT_QUERY
            }),
            payload: Bytes::copy_from_slice(cx.me.as_bytes()),
        };
        let vote = Vote {
            theirs,
            for_us: 0,
            for_them: 0,
        };
        let pending = Pending {
            ltime,
            expected: BTreeSet::new(),
            acks: BTreeSet::new(),
            responses: BTreeSet::new(),
            conflict: Some(vote),
            internal: false,
        };
        self.queries.pending.insert(id, pending);
        cx.fx.timers.schedule(
            cx.now + timeout,
            TimerKind::Serf(SerfTimer::QueryDeadline { id }),
        );
        self.queries.insert(ltime, cx.me, id);
        cx.serf_enqueue(SerfKey::Query(ltime, id), &Message::Query(Box::new(q)));
    }

    fn answer_conflict_vote(&mut self, q: &QueryMsg, cx: &mut Cx<'_>) {
        if q.from == *cx.me {
            return;
        }
        let Ok(name) = std::str::from_utf8(&q.payload) else {
            return;
        };
        let Some(rec) = cx.members.get(name).filter(|r| r.is_live()) else {
            return;
        };
        let Ok(addr) = postcard::to_allocvec(&rec.addr()) else {
            return;
        };
        let resp = QueryResp {
            ltime: q.ltime,
            id: q.id,
            from: cx.me.clone(),
            ack: false,
            payload: addr.into(),
        };
        self.send_query_resp(q.addr, 0, resp, cx);
    }

    /// The vote ended: give up the name if more members hold the other address, or on a tie
    /// when the other address is the lower one; otherwise keep it.
    /// Answer Serf's name-conflict query (HashiCorp profile) as a serf agent does: an ack if
    /// asked for, then this node's view of the member named by the payload (nil if none),
    /// except when the name is this node's own. Never surfaced as an event.
    fn answer_serf_conflict(&mut self, q: &QueryMsg, cx: &mut Cx<'_>) {
        let Some(versions) = cx.fx.hc.as_ref().map(|h| h.versions) else {
            return;
        };
        let members = &*cx.members;
        let answer = crate::wire::hashicorp::answer_conflict_query(cx.me, &q.payload, |name| {
            members.get(name).map(|r| {
                crate::wire::hashicorp::serf_member(
                    name,
                    r.addr(),
                    members.tags(r),
                    r.status(),
                    versions,
                )
            })
        });
        let ack = q.ack.then(Bytes::new);
        tracing::debug!(asker = %q.from, answered = answer.is_some(),
            "Serf's name-conflict query");
        for (ack, payload) in [(true, ack), (false, answer)] {
            let Some(payload) = payload else {
                continue;
            };
            let resp = QueryResp {
                ltime: q.ltime,
                id: q.id,
                from: cx.me.clone(),
                ack,
                payload,
            };
            self.send_query_resp(q.addr, q.relay_factor, resp, cx);
        }
    }

    fn conflict_vote_done(&mut self, vote: Vote, cx: &mut Cx<'_>) -> Outcome {
        let lose = vote.for_them > vote.for_us
            || (vote.for_them == vote.for_us && vote.for_us > 0 && vote.theirs < *cx.addr);
        tracing::debug!(for_us = vote.for_us, for_them = vote.for_them, claimant = %vote.theirs, lose,
            "name-conflict vote over");
        if lose && cx.running {
            cx.fx.stats.name_conflicts_lost += 1;
            return Outcome::NameLost;
        }
        Outcome::Nothing
    }

    pub(crate) fn on_query(&mut self, q: QueryMsg, cx: &mut Cx<'_>) {
        self.query_clock.witness(q.ltime);
        let buffer = cx.cfg.query_buffer as u64;
        let now_t = self.query_clock.time();
        if now_t > buffer && q.ltime < now_t - buffer {
            return;
        }
        if !self
            .queries
            .insert(q.ltime, &q.from, q.id)
            .is_new(cx, "query", q.ltime)
        {
            return;
        }
        // Every member passes the query on, selected or not.
        cx.serf_enqueue(
            SerfKey::Query(q.ltime, q.id),
            &Message::Query(Box::new(q.clone())),
        );
        if !cx.running {
            return;
        }
        // Answers go only to the address this node holds for the asker: a query cannot point
        // the cluster's answers (and their relays) at an address of someone's choosing. A
        // query from a member this node does not know yet is passed on but not answered here.
        // A name-conflict vote is also answered at an address this node saw claim the name.
        let known = cx.members.get(&q.from).map(|r| r.addr()) == Some(q.addr);
        let serf_conflict =
            cx.fx.hc.is_some() && crate::wire::hashicorp::is_conflict_query(&q.name);
        let claimed = (&*q.name == CONFLICT_QUERY || serf_conflict)
            && self
                .queries
                .claims
                .iter()
                .any(|(n, a)| *n == q.from && *a == q.addr);
        let vote = &*q.name == CONFLICT_QUERY || serf_conflict;
        if !known && !claimed {
            if vote {
                // The claim may still be on its way: answer when it arrives in time.
                let unclaimed = &mut self.queries.unclaimed;
                if unclaimed.len() >= MAX_CLAIMS {
                    // The oldest waiting vote goes unanswered here.
                    unclaimed.pop_front();
                    cx.fx.stats.replies_refused += 1;
                }
                let timeout = std::time::Duration::from_millis(u64::from(q.timeout_ms));
                unclaimed.push_back((q, cx.now + timeout));
                return;
            }
            cx.fx.stats.replies_refused += 1;
            tracing::debug!(asker = %q.from, addr = %q.addr, "query not answered: reply address is not the asker's");
            return;
        }
        if vote {
            self.answer_vote(&q, cx);
            return;
        }
        let serf_key_query = cx.fx.hc.is_some() && crate::wire::hashicorp::is_key_query(&q.name);
        if q.name.starts_with(crate::keyring::KEY_QUERY_PREFIX) || serf_key_query {
            // Answered by the router's key manager, never surfaced as an event.
            self.queries.key_inbox.push(q);
            return;
        }
        let tags = cx
            .members
            .get(cx.me)
            .map(|r| cx.members.tags(r).clone())
            .unwrap_or_default();
        let Ok(filters) = Filters::compile(&q.filter_nodes, &q.filter_tags) else {
            return;
        };
        if !filters.selects(cx.me, &tags) {
            return;
        }
        let deadline = cx.now + Duration::from_millis(q.timeout_ms as u64);
        // Bound the answers this node keeps open: forget expired ones, then the oldest.
        let now = cx.now;
        self.queries.open.retain(|_, d| *d >= now);
        while self.queries.open.len() >= cx.cfg.query_buffer {
            let first = self.queries.open.keys().next().cloned();
            match first {
                Some(k) => self.queries.open.remove(&k),
                None => break,
            };
        }
        self.queries
            .open
            .insert((q.from.clone(), q.ltime, q.id), deadline);
        if q.ack {
            let ack = QueryResp {
                ltime: q.ltime,
                id: q.id,
                from: cx.me.clone(),
                ack: true,
                payload: Bytes::new(),
            };
            self.send_query_resp(q.addr, q.relay_factor, ack, cx);
        }
        let handle = QueryHandle {
            origin: Box::new(QueryOrigin {
                name: q.from.clone(),
                addr: q.addr,
                ltime: q.ltime,
                id: q.id,
                relay_factor: q.relay_factor,
            }),
            deadline,
        };
        self.emit(
            Event::Query(IncomingQuery {
                handle,
                name: q.name,
                payload: q.payload,
                from: q.from,
            }),
            cx,
        );
    }

    pub(crate) fn on_query_response(&mut self, r: QueryResp, cx: &mut Cx<'_>) -> Outcome {
        let Some(p) = self.queries.pending.get_mut(&r.id) else {
            return Outcome::Nothing;
        };
        if p.ltime != r.ltime {
            return Outcome::Nothing;
        }
        if let Some(vote) = &mut p.conflict {
            // Only members this node knows as alive vote, once each: invented voters (or one
            // member answering many times) cannot outvote the members that know the name.
            let voter = r.from != *cx.me && cx.members.get(&r.from).is_some_and(|m| m.is_live());
            if r.ack || !voter || !p.responses.insert(r.from.clone()) {
                if !r.ack {
                    cx.fx.stats.votes_refused += 1;
                    tracing::debug!(voter = %r.from, "name-conflict vote answer not counted");
                }
            } else {
                // Native: the address, postcard-encoded. HashiCorp: Serf's conflict response
                // (a nil one, from a member that knows no one by the name, counts for neither).
                let held = if cx.fx.hc.is_some() {
                    crate::wire::hashicorp::conflict_answer_addr(&r.payload)
                } else {
                    postcard::from_bytes::<SocketAddr>(&r.payload).ok()
                };
                match held {
                    Some(a) if a == *cx.addr => vote.for_us += 1,
                    Some(a) if a == vote.theirs => vote.for_them += 1,
                    _ => {}
                }
            }
            return Outcome::Nothing;
        }
        if p.internal {
            if r.ack || !p.responses.insert(r.from.clone()) {
                return Outcome::Nothing;
            }
            let done = p.expected.iter().all(|n| p.responses.contains(n));
            return Outcome::KeyResponse { resp: r, done };
        }
        let query = QueryId(r.id);
        if r.ack {
            if p.acks.insert(r.from.clone()) {
                self.emit(
                    Event::QueryAck {
                        query,
                        from: r.from,
                    },
                    cx,
                );
            }
            return Outcome::Nothing;
        }
        if !p.responses.insert(r.from.clone()) {
            return Outcome::Nothing;
        }
        let done = p.expected.iter().all(|n| p.responses.contains(n));
        self.emit(
            Event::QueryResponse {
                query,
                from: r.from,
                payload: r.payload,
            },
            cx,
        );
        if done {
            return self.query_deadline(r.id, cx);
        }
        Outcome::Nothing
    }

    pub(crate) fn query_deadline(&mut self, id: u32, cx: &mut Cx<'_>) -> Outcome {
        if let Some(p) = self.queries.pending.remove(&id) {
            if let Some(vote) = p.conflict {
                return self.conflict_vote_done(vote, cx);
            }
            if p.internal {
                return Outcome::KeyDone(id);
            }
            let ev = Event::QueryDone {
                query: QueryId(id),
                acks: p.acks.len(),
                responses: p.responses.len(),
            };
            self.emit(ev, cx);
        }
        Outcome::Nothing
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::event::{Event, QueryParams};
    use crate::testkit::*;
    use crate::wire::{Message, QueryResp};
    use crate::ApiError;

    #[test]
    fn filters_select_by_name_and_tag_regex() {
        let f =
            super::Filters::compile(&["a".into(), "b".into()], &[("role".into(), "^db".into())])
                .unwrap();
        let mut tags = crate::Tags::new();
        tags.insert("role".into(), "db-primary".into());
        assert!(f.selects("a", &tags));
        assert!(!f.selects("c", &tags), "name filter");
        assert!(!f.selects("b", &crate::Tags::new()), "missing tag");
        assert!(super::Filters::compile(&[], &[("k".into(), "(".into())]).is_err());
    }

    #[test]
    fn asker_answers_itself_and_finishes_early() {
        let mut a = node("a", 1);
        let q = a
            .query(at(1), "ping", &b"?"[..], QueryParams::default())
            .unwrap();
        let incoming = events(&mut a)
            .into_iter()
            .find_map(|e| match e {
                Event::Query(q) => Some(q),
                _ => None,
            })
            .expect("the asker is selected by an unfiltered query");
        a.respond(at(2), &incoming.handle, &b"pong"[..]).unwrap();
        assert_eq!(
            a.respond(at(2), &incoming.handle, &b"again"[..]),
            Err(ApiError::QueryClosed)
        );
        let got = events(&mut a);
        assert!(
            matches!(&got[..], [Event::QueryResponse { query, .. }, Event::QueryDone { query: d, responses: 1, .. }] if *query == q && *d == q),
            "{got:?}"
        );
    }

    #[test]
    fn responses_are_deduplicated_and_the_deadline_ends_the_query() {
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
        events(&mut a);
        let params = QueryParams {
            filter_nodes: vec!["b".into()],
            request_ack: true,
            timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let q = a.query(at(1), "x", &b""[..], params).unwrap();
        assert!(events(&mut a).is_empty(), "a is not selected");
        let ltime = a.serf.query_clock.time() - 1;
        let ack = QueryResp {
            ltime,
            id: q.0,
            from: "b".into(),
            ack: true,
            payload: Default::default(),
        };
        deliver(
            &mut a,
            at(2),
            2,
            &[
                Message::QueryResponse(ack.clone()),
                Message::QueryResponse(ack),
            ],
        );
        assert!(matches!(&events(&mut a)[..], [Event::QueryAck { .. }]));
        a.handle_timeout(at(1) + Duration::from_secs(2));
        assert!(events(&mut a).contains(&Event::QueryDone {
            query: q,
            acks: 1,
            responses: 0
        }));
    }

    #[test]
    fn responses_also_go_through_relays() {
        let mut b = node("b", 2);
        deliver(
            &mut b,
            at(0),
            3,
            &[
                alive("a", 1, 0),
                alive("c", 3, 0),
                alive("d", 4, 0),
                alive("e", 5, 0),
            ],
        );
        sent(&mut b);
        let q = crate::wire::QueryMsg {
            ltime: 1,
            id: 7,
            from: "a".into(),
            addr: addr(1),
            filter_nodes: vec![],
            filter_tags: vec![],
            ack: false,
            relay_factor: 2,
            timeout_ms: 5000,
            name: "q".into(),
            payload: Default::default(),
        };
        deliver(&mut b, at(1), 3, &[Message::Query(Box::new(q))]);
        let incoming = events(&mut b)
            .into_iter()
            .find_map(|e| match e {
                Event::Query(q) => Some(q),
                _ => None,
            })
            .unwrap();
        sent(&mut b);
        b.respond(at(2), &incoming.handle, &b"r"[..]).unwrap();
        let out = sent(&mut b);
        let direct = out
            .iter()
            .filter(|(to, _, m)| *to == addr(1) && matches!(m[0], Message::QueryResponse(_)))
            .count();
        let relayed: Vec<u16> = out
            .iter()
            .filter(
                |(_, _, m)| matches!(&m[0], Message::RelayResponse { to, .. } if *to == addr(1)),
            )
            .map(|(to, _, _)| to.port())
            .collect();
        assert_eq!(direct, 1);
        assert_eq!(relayed.len(), 2, "relay_factor members forward it");
        // A relay forwards to the asker, a live member; never to an unknown address.
        let mut c = node("c", 3);
        let resp = crate::wire::QueryResp {
            ltime: 1,
            id: 7,
            from: "b".into(),
            ack: false,
            payload: Default::default(),
        };
        let to_stranger = Message::RelayResponse {
            to: addr(1),
            resp: resp.clone(),
        };
        deliver(&mut c, at(3), 2, &[to_stranger]);
        assert!(sent(&mut c).is_empty());
        assert_eq!(c.stats().replies_refused, 1);
        deliver(&mut c, at(3), 1, &[alive("a", 1, 0)]);
        sent(&mut c);
        deliver(
            &mut c,
            at(3),
            2,
            &[Message::RelayResponse { to: addr(1), resp }],
        );
        assert!(sent(&mut c)
            .iter()
            .any(|(to, _, m)| *to == addr(1) && matches!(m[0], Message::QueryResponse(_))));
    }

    #[test]
    fn limits_and_bad_filters_are_typed_errors() {
        let mut a = node("a", 1);
        let big = vec![0u8; 2000];
        assert!(matches!(
            a.query(at(1), "q", big, QueryParams::default()),
            Err(ApiError::TooLarge { what: "query", .. })
        ));
        let bad = QueryParams {
            filter_tags: vec![("k".into(), "[".into())],
            ..Default::default()
        };
        assert!(matches!(
            a.query(at(1), "q", &b""[..], bad),
            Err(ApiError::BadFilter(_))
        ));
        std::sync::Arc::make_mut(&mut a.cfg).max_pending_queries = 1;
        a.query(at(1), "q", &b""[..], QueryParams::default())
            .unwrap();
        events(&mut a);
        let _ = a.poll_event();
        // The first query finished early (a answered nothing yet, but it is pending).
        assert_eq!(
            a.query(at(1), "q2", &b""[..], QueryParams::default()),
            Err(ApiError::TooManyQueries)
        );
        let incoming = crate::event::QueryHandle {
            origin: Box::new(crate::event::QueryOrigin {
                name: "z".into(),
                addr: addr(9),
                ltime: 1,
                id: 1,
                relay_factor: 0,
            }),
            deadline: at(5),
        };
        assert_eq!(
            a.respond(at(1), &incoming, vec![0u8; 2000]),
            Err(ApiError::TooLarge {
                what: "response",
                size: 2000,
                limit: 1024
            })
        );
    }
}
