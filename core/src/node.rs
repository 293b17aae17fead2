//! The [`Node`]: the public face of the state machine and the router over its parts. It owns
//! what every part shares — the configuration, identity, RNG, clock, member table and the
//! effects sink — and the parts themselves (`swim`, `dissemination`, `lifecycle`, `serf`). It
//! checks and decodes inputs, hands each message or timer to the part that owns it with the
//! narrow context ([`Cx`], built by `cx!`), and acts on the outcomes parts return: a verdict to
//! apply as a membership update (`membership`), a push-pull to send with the Serf layer's
//! share, a join completed, the node gone. The public API methods check the run state and call
//! the part that owns the operation.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, ConfigError};
use crate::ctx::{Cx, Effects};
use crate::dissemination::{push_pull, DissTimer, Dissemination, SerfShare};
use crate::error::{ApiError, InputError};
use crate::event::{Event, QueryHandle, QueryId, QueryParams, StopReason};
use crate::identity::{Identity, Member, MemberStatus, Name, Tags};
use crate::input::{Call, HandleError, Handled, Input};
use crate::keyring::{self, KeyManager, KeyOp, KeyOpId, Keyring, Opened, Refusal, Security};
use crate::lifecycle::{self, JoinDone, Lifecycle};
use crate::members::{MemberRec, Members, Near, Prefetched};
use crate::swim::{FailureDetector, SwimTimer, Verdict};

use crate::admission::Admission;
use crate::membership::AliveNews;
use crate::plausible;
use crate::serf::{self, Serf};
use crate::stats::{QueueDepths, Stats};
use crate::time::Timestamp;
use crate::timers::TimerKind;
use crate::wire::{self, Decoded, Digest, Envelope, Limits, Message};

/// The narrow context ([`Cx`]) of node `$n`, borrowing only the shared fields, so that a part
/// (another field of the node) can be called with it: `self.swim.on_ack(.., &mut cx!(self))`.
macro_rules! cx {
    ($n:expr) => {
        $crate::ctx::Cx {
            now: $n.now,
            cfg: &$n.cfg,
            me: &$n.me,
            addr: &$n.addr,
            rng: &mut $n.rng,
            members: &mut $n.members,
            fx: &mut $n.fx,
            running: $n.run == $crate::node::RunState::Running,
        }
    };
}
pub(crate) use cx;

/// How a transmit must travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransmitKind {
    /// One UDP datagram, at most [`Config::mtu`] bytes.
    Datagram,
    /// One reliable message (TCP), already framed: write the payload as is. The receiver
    /// splits frames with [`crate::wire::FrameDecoder`] and hands each body to
    /// [`Node::handle_stream`]. If it cannot be delivered, tell the node with
    /// [`Node::handle_send_failure`].
    Reliable,
}

/// Bytes the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub to: SocketAddr,
    /// Datagram or reliable message.
    pub kind: TransmitKind,
    /// The bytes to send.
    pub payload: Bytes,
    /// The direct message this reliable transmit carries, if it carries one: a driver that
    /// cannot deliver it hands the number back with [`Node::handle_send_failure`] (the node
    /// then reports [`crate::Event::SendFailed`] for it), and may tell its caller that the
    /// message was written to the peer's connection once it was.
    pub message: Option<crate::MessageId>,
}

impl std::hash::Hash for Transmit {
    /// The message number counts only when there is one, so that traces of runs without
    /// direct messages hash as they did before the field existed.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.to.hash(h);
        self.kind.hash(h);
        self.payload.hash(h);
        if let Some(m) = self.message {
            m.hash(h);
        }
    }
}

pub(crate) use crate::lifecycle::RunState;

/// Where the bytes after an input's envelope are.
enum Body {
    /// The last `n` bytes of the input itself (it was plaintext).
    Plain(usize),
    /// An opened sealed envelope's plaintext.
    Sealed(Vec<u8>),
}

impl Body {
    fn body<'d>(&'d self, data: &'d [u8]) -> &'d [u8] {
        match self {
            Body::Plain(n) => &data[data.len() - n..],
            Body::Sealed(buf) => buf,
        }
    }
}

/// One cluster member's protocol state machine. See the crate docs for the driving loop.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: Arc<Config>,
    pub(crate) me: Name,
    pub(crate) addr: SocketAddr,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: Timestamp,
    pub(crate) run: RunState,
    pub(crate) members: Members,
    /// Outputs, timers, broadcast queues and counters: where every part's effects go.
    pub(crate) fx: Effects,
    /// SWIM failure detection with Lifeguard.
    pub(crate) swim: FailureDetector,
    /// Gossip, push-pull and digest repair.
    pub(crate) diss: Dissemination,
    /// Joining and the graceful leave.
    pub(crate) life: Lifecycle,
    /// Accusers told of the current incarnation directly (at most 16; cleared on refutation).
    pub(crate) told_accusers: Vec<Name>,
    /// The Serf layer.
    pub(crate) serf: Serf,
    /// Where [`Members::prefetch`] found a datagram's members (kept to reuse its memory).
    prefetched: Prefetched,
    limits: Limits,
    /// The driver's entropy for nonces, until the first keyring takes it (see `keyring`).
    entropy: Option<Box<[u8; 32]>>,
    /// Cluster-wide key operations this node started.
    keys: KeyManager,
    /// How many new members each sender may still introduce ([`crate::admission`]).
    admission: Admission,
    /// Why the node went inert, once it has ([`Node::stop_reason`]).
    stop_reason: Option<StopReason>,
    /// Members this node forgot ([`Node::forget_member`]): the address and incarnation it
    /// knew, so that gossip of that life does not bring them back (a newer one does). At most
    /// `max_members` entries (the oldest name in order goes first).
    pub(crate) forgotten: BTreeMap<Name, (SocketAddr, u32)>,
    /// Claims of a live member's name from another address, waiting for the check of its
    /// known address (see `membership.rs`); at most one per name, as many as checks run.
    pub(crate) claims: BTreeMap<Name, crate::wire::Alive>,
    /// Alive messages of members failed here, waiting for their revival check
    /// ([`Config::revival_check`]), and whether to pass each on once taken; at most one per
    /// name, as many as revival checks run.
    pub(crate) revivals: BTreeMap<Name, (crate::wire::Alive, bool)>,
    /// Members whose last revival check went unanswered: how many in a row, and when the next
    /// may start (see `membership.rs`). At most [`crate::membership::MAX_REVIVAL_BACKOFFS`].
    pub(crate) revival_backoff: BTreeMap<Name, (u8, crate::time::Timestamp)>,
}

/// What an update in the Serf broadcast queue is about; a newer update replaces an older one
/// with the same key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SerfKey {
    /// The latest join or leave intent about a member.
    Intent(Name),
    /// One user event (Lamport time and a hash of name and payload).
    Event(u64, u64),
    /// One query (Lamport time, id).
    Query(u64, u32),
}

/// Give back a drained output queue's memory: a burst (a join's push-pull reports every
/// member at once) should not stay allocated, and a thousand idle nodes in one simulation
/// should not each hold even a small queue (their events are drained after every input).
pub(crate) fn release_burst<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > 0 {
        *q = VecDeque::new();
    }
}

impl Node {
    /// Create a node. It knows only itself until [`Node::join`]; its timers start at `now`
    /// (staggered randomly so that nodes started together do not tick together). `config` is
    /// a [`Config`] or an `Arc<Config>` (nodes simulated together can share one).
    ///
    /// A node created this way has no entropy for encryption nonces: a configuration with a
    /// keyring is refused ([`ConfigError::KeyringWithoutEntropy`]) and so is a later
    /// [`Node::set_keyring`]. Use [`Node::with_entropy`] for those.
    pub fn new(
        config: impl Into<Arc<Config>>,
        identity: Identity,
        seed: u64,
        now: Timestamp,
    ) -> Result<Node, ConfigError> {
        Node::build(config.into(), identity, seed, None, now)
    }

    /// [`Node::new`] with 32 bytes of `entropy` for encryption nonces: OS randomness in a real
    /// driver, values derived from the seed in the simulator. Nonces are never drawn from the
    /// seeded RNG, so they do not repeat across restarts even with a fixed `seed` (the
    /// construction is in the crate docs). Without a keyring the entropy is kept, unused, for
    /// a keyring set later; nothing else about the node depends on it.
    pub fn with_entropy(
        config: impl Into<Arc<Config>>,
        identity: Identity,
        seed: u64,
        entropy: [u8; 32],
        now: Timestamp,
    ) -> Result<Node, ConfigError> {
        Node::build(config.into(), identity, seed, Some(Box::new(entropy)), now)
    }

    fn build(
        config: Arc<Config>,
        identity: Identity,
        seed: u64,
        entropy: Option<Box<[u8; 32]>>,
        now: Timestamp,
    ) -> Result<Node, ConfigError> {
        config.validate()?;
        if config.keyring.is_some() && entropy.is_none() {
            return Err(ConfigError::KeyringWithoutEntropy);
        }
        if identity.name.is_empty() || identity.name.len() > config.max_name_len {
            return Err(ConfigError::BadName);
        }
        let tags_len = wire::tags_encoded_len(&identity.tags);
        if tags_len > config.meta_max_size {
            return Err(ConfigError::TagsTooLarge { size: tags_len });
        }
        let me: Name = Name::new(&identity.name);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut members = Members::new(&identity.name, &mut rng);
        members.insert(
            MemberRec::new(me.clone(), identity.addr, 0),
            &identity.tags,
            now,
            &mut rng,
        );
        let limits = Limits::from_config(&config);
        let fx = Effects::new(&config, &mut rng);
        let mut node = Node {
            fx,
            swim: FailureDetector::new(0),
            serf: Serf::new(&config, now),
            me,
            addr: identity.addr,
            rng,
            now,
            run: RunState::Running,
            stop_reason: None,
            forgotten: BTreeMap::new(),
            claims: BTreeMap::new(),
            revivals: BTreeMap::new(),
            revival_backoff: BTreeMap::new(),
            members,
            diss: Dissemination::default(),
            life: Lifecycle::default(),
            told_accusers: Vec::new(),
            prefetched: Prefetched::default(),
            limits,
            entropy,
            keys: KeyManager::default(),
            admission: Admission::new(config.mtu),
            cfg: config,
        };
        if let Some(ring) = node.cfg.keyring.clone() {
            let (incoming, outgoing) = (
                node.cfg.gossip_verify_incoming,
                node.cfg.gossip_verify_outgoing,
            );
            let sec = node.security().expect("entropy checked above");
            sec.keyring = Some(ring);
            sec.verify_incoming = incoming;
            sec.verify_outgoing = outgoing;
        }
        node.swim = FailureDetector::new(node.rng.random());
        node.broadcast_self();
        let stagger = |n: &mut Node, d: std::time::Duration| {
            let micros = d.as_micros().max(1) as u64;
            // Timestamp arithmetic saturates: a driver may start its clock anywhere.
            now + std::time::Duration::from_micros(n.rng.random_range(0..micros))
        };
        let (probe, gossip, push_pull) = (
            node.cfg.probe_interval,
            node.cfg.gossip_interval,
            node.cfg.push_pull_interval,
        );
        let at = stagger(&mut node, probe);
        FailureDetector::arm(&mut cx!(node), at);
        let gossip_at = stagger(&mut node, gossip);
        let push_pull_at = (!push_pull.is_zero()).then(|| stagger(&mut node, push_pull));
        Dissemination::arm(&mut cx!(node), gossip_at, push_pull_at);
        let (reap, reconnect) = (node.cfg.reap_interval, node.cfg.reconnect_interval);
        let reap_at = stagger(&mut node, reap);
        let reconnect_at = (!reconnect.is_zero()).then(|| stagger(&mut node, reconnect));
        Serf::arm(&mut cx!(node), reap_at, reconnect_at);
        Ok(node)
    }

    pub(crate) fn advance(&mut self, now: Timestamp) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Hand the node one [`Input`]: the single entry point every input can take (the typed
    /// methods below are its parts). Outputs wait in the poll queues as after any input.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<Handled, HandleError> {
        match input {
            Input::Datagram { from, payload } => self.handle_packet(now, from, &payload)?,
            Input::Stream { from, body } => self.handle_stream(now, from, &body)?,
            Input::SendFailed { to, message } => self.handle_send_failure(now, to, message),
            Input::Timeout => self.handle_timeout(now),
            Input::Call(call) => return self.call(now, *call),
        }
        Ok(Handled::Done)
    }

    fn call(&mut self, now: Timestamp, call: Call) -> Result<Handled, HandleError> {
        match call {
            Call::Join { seeds, ignore_old } => self.join_with(now, &seeds, ignore_old)?,
            Call::Leave => self.leave(now)?,
            Call::SetTags(tags) => self.set_tags(now, tags)?,
            Call::UserEvent {
                name,
                payload,
                coalesce,
            } => self.user_event(now, &name, payload, coalesce)?,
            Call::Query {
                name,
                payload,
                params,
            } => return Ok(Handled::Query(self.query(now, &name, payload, params)?)),
            Call::Respond { query, payload } => self.respond(now, &query, payload)?,
            Call::Send { to, payload, acked } => {
                return Ok(Handled::Sent(self.send_with(now, &to, payload, acked)?));
            }
            Call::Broadcast { payload } => {
                return Ok(Handled::Broadcast(self.broadcast(now, payload)?))
            }
            Call::RemoveFailed { name, prune } => self.remove_failed(now, &name, prune)?,
        }
        Ok(Handled::Done)
    }

    /// Handle one datagram received from `from`. Undecodable input is counted and ignored
    /// without any state change.
    pub fn handle_packet(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), InputError> {
        self.advance(now);
        if self.run == RunState::Left {
            return Err(InputError::NotRunning);
        }
        self.fx.stats.packets_in += 1;
        self.fx.stats.bytes_in += data.len() as u64;
        self.within(from, data.len(), wire::MAX_DATAGRAM)?;
        if let Some(serf) = self.fx.hc.as_deref().map(|hc| hc.serf) {
            let (plain, looked_sealed) = self.hc_open_datagram(from, data)?;
            self.admission.begin_input();
            let items = wire::hashicorp::decode_datagram(&plain, serf)
                .map_err(|e| self.hc_undecodable(from, data, looked_sealed, e))?;
            for item in items {
                self.handle_hc(from, item, false);
            }
            return Ok(());
        }
        let opened = self.open(from, data)?;
        self.admission.begin_input();
        let result = self.handle_datagram_body(from, opened.body(data));
        self.recycle(opened);
        result
    }

    /// The messages of a datagram after its envelope (opened when it was sealed).
    fn handle_datagram_body(&mut self, from: SocketAddr, body: &[u8]) -> Result<(), InputError> {
        let msgs = wire::decode_datagram(body, &self.limits).map_err(|e| self.rejected(from, e))?;
        if msgs
            .iter()
            .any(|m| matches!(m, Decoded::Message(Message::PushPull(_))))
        {
            let e = wire::DecodeError::Invalid("push-pull in a datagram");
            return Err(self.rejected(from, e));
        }
        let mut found = std::mem::take(&mut self.prefetched);
        if msgs.len() > 4 {
            self.members
                .prefetch(msgs.iter().map(Decoded::member_name), &mut found);
        }
        for (i, msg) in msgs.into_iter().enumerate() {
            self.handle_decoded(from, msg, found.near(i));
        }
        self.prefetched = found;
        Ok(())
    }

    fn handle_decoded(&mut self, from: SocketAddr, msg: Decoded<'_>, near: Near) {
        self.swim.reached(self.now);
        match msg {
            Decoded::Message(msg) => self.handle_message(from, msg, near),
            Decoded::Alive(a) => {
                if self.clocks_now().member_too_far(a.ltime) {
                    self.far_ahead(from, "alive");
                    return;
                }
                let news = self.alive_is_known(&a, near);
                if news == AliveNews::NewMember && !self.admit_new_member(from) {
                    return;
                }
                if news != AliveNews::Known {
                    self.apply_alive(a.to_alive(), true, near);
                }
            }
        }
    }

    /// Handle one complete reliable message (a frame body, without the length prefix) from
    /// `from`. Undecodable input is counted and ignored without any state change.
    ///
    /// Under the HashiCorp profiles a push-pull carries no request flag: one from an address
    /// this node sent a push-pull to within `tcp_timeout` is taken as the answer, any other as
    /// a request. A driver that knows better says so with [`Node::handle_stream_answer`].
    pub fn handle_stream(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        frame: &[u8],
    ) -> Result<(), InputError> {
        self.stream_in(now, from, frame, false)
    }

    /// [`Node::handle_stream`] for a message read on a connection this node's driver opened
    /// to send `from` a message: the peer's answer. Under the HashiCorp profiles (memberlist
    /// pairs a push-pull with its answer by the connection) a push-pull here is never taken
    /// as a request: it answers the exchange this node started with `from`, or, when that
    /// exchange was given up (the answer came after `tcp_timeout`), its state is merged
    /// unanswered and it is counted in [`crate::Stats::late_answers`] — answered as a
    /// request, it would start an exchange the peer takes for a new request, and so on
    /// without end. Under the native profile
    /// (whose push-pull says what it is) the same as [`Node::handle_stream`].
    pub fn handle_stream_answer(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        frame: &[u8],
    ) -> Result<(), InputError> {
        self.stream_in(now, from, frame, true)
    }

    fn stream_in(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        frame: &[u8],
        answer: bool,
    ) -> Result<(), InputError> {
        self.advance(now);
        if self.run == RunState::Left {
            return Err(InputError::NotRunning);
        }
        self.fx.stats.streams_in += 1;
        self.fx.stats.stream_bytes_in += frame.len() as u64;
        self.within(from, frame.len(), self.cfg.max_stream_message)?;
        if let Some(serf) = self.fx.hc.as_deref().map(|hc| hc.serf) {
            let plain = self.hc_open_stream(from, frame)?;
            self.admission.begin_input();
            let item = wire::hashicorp::decode_stream_message(&plain, from, serf)
                .map_err(|e| self.hc_rejected(from, e))?;
            self.handle_hc(from, item, answer);
            return Ok(());
        }
        let opened = self.open(from, frame)?;
        self.admission.begin_input();
        let msg = wire::decode_single(opened.body(frame), &self.limits);
        self.recycle(opened);
        let msg = msg.map_err(|e| self.rejected(from, e))?;
        self.handle_message(from, msg, Near::UNKNOWN);
        Ok(())
    }

    /// Route one message received in the HashiCorp profile (see `wire::hashicorp::session`).
    /// `answer`: it came on a connection this node opened ([`Node::handle_stream_answer`]).
    fn handle_hc(&mut self, from: SocketAddr, item: wire::hashicorp::Incoming, answer: bool) {
        use wire::hashicorp::Incoming;
        self.swim.reached(self.now);
        match item {
            Incoming::Message(msg) => self.handle_message(from, msg, Near::UNKNOWN),
            Incoming::JoinIntent(i) => {
                if self.clocks_now().member_too_far(i.ltime) {
                    self.far_ahead(from, "join intent");
                    return;
                }
                self.serf.on_join_intent(i, &mut cx!(self));
            }
            Incoming::PushPull(p) => {
                let sender = match self.members.iter().find(|r| r.addr() == from) {
                    Some(r) => r.name.to_name(),
                    None => Name::from(""),
                };
                let Some(hc) = self.fx.hc.as_deref_mut() else {
                    return;
                };
                match hc.push_pull(&p, from, sender, self.now, self.cfg.tcp_timeout, answer) {
                    Ok((p, false)) => {
                        self.handle_message(from, Message::PushPull(Box::new(p)), Near::UNKNOWN)
                    }
                    Ok((p, true)) => {
                        self.fx.stats.late_answers += 1;
                        tracing::debug!(%from,
                            "push-pull answer after its exchange was given up: merged, not answered");
                        self.on_late_push_pull(p);
                    }
                    Err(e) => {
                        let _ = self.hc_rejected(from, e);
                    }
                }
            }
            Incoming::User(payload) => {
                // memberlist's user messages name no sender: the member at the address it
                // came from, else that address written out (a reliable one comes from a
                // connection's port, which no member advertises).
                let sender = match self.members.iter().find(|r| r.addr() == from) {
                    Some(r) => r.name.to_name(),
                    None => Name::new(from.to_string()),
                };
                tracing::trace!(%from, %sender, len = payload.len(), "memberlist user message");
                self.serf.on_direct(sender, payload, &mut cx!(self));
            }
            Incoming::Skipped(why) => {
                self.fx.stats.profile_skipped += 1;
                tracing::trace!(%from, why, "message skipped: no counterpart here");
            }
        }
    }

    /// HashiCorp profile: the plaintext of a received datagram, as memberlist reads one. With
    /// a keyring it is opened with any key; when none opens it, it is refused — as plaintext
    /// when it decodes as such or does not start with an encryption version, as truncated
    /// when it is shorter than a seal, else as sealed under a key this node lacks — unless
    /// `gossip_verify_incoming` is off, which reads it as plaintext (then whether it looked
    /// sealed is returned, for the count should it not decode). Without a keyring it is
    /// plaintext.
    fn hc_open_datagram<'d>(
        &mut self,
        from: SocketAddr,
        data: &'d [u8],
    ) -> Result<(std::borrow::Cow<'d, [u8]>, bool), InputError> {
        use wire::hashicorp::{self as hc, HcError};
        let Some(sec) = self.fx.sec.as_deref() else {
            return Ok((data.into(), false));
        };
        let Some(ring) = sec.keyring.as_ref() else {
            return Ok((data.into(), false));
        };
        let e = match hc::open_with(ring, data, &[]) {
            Ok(plain) => return Ok((plain.into(), false)),
            Err(e) => e,
        };
        let sealed_form = matches!(e, HcError::Unopened | HcError::BadPadding);
        if !sec.verify_incoming {
            return Ok((data.into(), sealed_form));
        }
        let not_sealed = !sealed_form && !matches!(e, HcError::Truncated);
        let refusal = if not_sealed || hc::decode_packet(data).is_ok() {
            Refusal::Plaintext
        } else if sealed_form {
            Refusal::NoKey
        } else {
            Refusal::Truncated
        };
        tracing::trace!(%from, error = %e, "HashiCorp datagram not opened");
        Err(self.refused(from, refusal))
    }

    /// HashiCorp profile: a received datagram's plaintext did not decode. Counted as a decode
    /// error, except that bytes which look sealed — they failed to open with this node's keys
    /// (`looked_sealed`), or this node has no keyring and they start with an encryption
    /// version, are as long as a seal, and are no plaintext — are counted by that cause (a
    /// key this node lacks; sealed while it has no keyring): the usual mistakes of a node
    /// joining an encrypted Serf cluster.
    fn hc_undecodable(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        looked_sealed: bool,
        e: wire::hashicorp::HcError,
    ) -> InputError {
        if looked_sealed {
            return self.refused(from, Refusal::NoKey);
        }
        let keyless = self.keyring().is_none();
        let sealed_shape =
            matches!(data.first(), Some(0 | 1)) && data.len() >= wire::hashicorp::SEAL_OVERHEAD;
        if keyless && sealed_shape {
            tracing::trace!(%from, error = %e, "HashiCorp datagram looks sealed, no keyring");
            return self.refused(from, Refusal::Unexpected);
        }
        self.hc_rejected(from, e)
    }

    /// HashiCorp profile: the plaintext of a received stream message, as memberlist reads one.
    /// A sealed one (type 10) is opened with any key of the keyring (refused without one); a
    /// plaintext one is refused when this node has a keyring and `gossip_verify_incoming`.
    fn hc_open_stream<'d>(
        &mut self,
        from: SocketAddr,
        frame: &'d [u8],
    ) -> Result<std::borrow::Cow<'d, [u8]>, InputError> {
        use wire::hashicorp::{self as hc, HcError};
        let ring = self
            .fx
            .sec
            .as_deref()
            .and_then(|s| s.keyring.as_ref().map(|r| (r, s.verify_incoming)));
        let sealed = frame.first() == Some(&(hc::MsgType::Encrypt as u8));
        let refusal = match (sealed, ring) {
            (false, Some((_, true))) => Refusal::Plaintext,
            (false, _) => return Ok(frame.into()),
            (true, None) => Refusal::Unexpected,
            (true, Some((ring, _))) => match hc::open_stream_with(ring, frame) {
                Ok((plain, used)) if used == frame.len() => return Ok(plain.into()),
                Ok(_) => return Err(self.hc_rejected(from, HcError::TrailingBytes)),
                Err(HcError::Unopened | HcError::BadPadding) => Refusal::NoKey,
                Err(HcError::Truncated) => Refusal::Truncated,
                Err(e) => return Err(self.hc_rejected(from, e)),
            },
        };
        Err(self.refused(from, refusal))
    }

    /// Count and log HashiCorp bytes that did not decode; the input error.
    fn hc_rejected(&mut self, from: SocketAddr, e: wire::hashicorp::HcError) -> InputError {
        tracing::trace!(%from, error = %e, "refused undecodable HashiCorp input");
        self.rejected(from, e.into())
    }

    /// Count a decode failure and turn it into the input error.
    /// Refuse input of `len` bytes above `max`.
    fn within(&mut self, from: SocketAddr, len: usize, max: usize) -> Result<(), InputError> {
        if len > max {
            return Err(self.rejected(from, wire::DecodeError::TooLarge { len, max }));
        }
        Ok(())
    }

    /// Logged like the keyring's refusals (at most one line per second, with the count of
    /// those not logged), the error itself at trace level.
    fn rejected(&mut self, from: SocketAddr, e: wire::DecodeError) -> InputError {
        self.fx.stats.decode_errors += 1;
        tracing::trace!(%from, error = %e, "refused undecodable input");
        self.fx.refusals.get_or_insert_with(Default::default).note(
            self.now,
            Refusal::Undecodable,
            from,
        );
        InputError::Decode(e)
    }

    /// Check version and label, and open a sealed envelope (see `keyring`): where the bytes
    /// after the envelope are. Refusals are counted by cause and logged (rate-limited).
    fn open(&mut self, from: SocketAddr, data: &[u8]) -> Result<Body, InputError> {
        let label = self.cfg.label.as_deref().unwrap_or("").as_bytes();
        let plain = match self.fx.sec.as_deref_mut() {
            Some(sec) => match sec.open(data, label) {
                Ok(Opened::Plain(plain)) => plain,
                Ok(Opened::Sealed(buf)) => return Ok(Body::Sealed(buf)),
                Err(r) => return Err(self.refused(from, r)),
            },
            None => match keyring::refuse_without_keyring(data) {
                Some(r) => return Err(self.refused(from, r)),
                None => data,
            },
        };
        match wire::open_envelope(plain, self.cfg.label.as_deref()) {
            Ok(Envelope::Ours(body)) => Ok(Body::Plain(body.len())),
            Ok(Envelope::OtherLabel) => Err(self.refused(from, Refusal::Label)),
            Err(e) => Err(self.rejected(from, e)),
        }
    }

    /// The receiving Lamport clocks, for [`plausible::Clocks::too_far`].
    fn clocks_now(&self) -> plausible::Clocks {
        let (member, event, query) = self.serf.clocks();
        plausible::Clocks {
            member,
            event,
            query,
        }
    }

    /// Whether `from` may introduce one more member this node does not know
    /// ([`crate::admission`]); counted and logged when not.
    fn admit_new_member(&mut self, from: SocketAddr) -> bool {
        if self.admission.admit(from.ip(), self.now) {
            return true;
        }
        self.fx.stats.members_refused += 1;
        tracing::debug!(%from, "new member refused: the sender introduced too many at once");
        false
    }

    /// Count and log a message refused as implausibly far ahead.
    pub(crate) fn far_ahead(&mut self, from: SocketAddr, what: &'static str) {
        self.fx.stats.far_ahead_refused += 1;
        tracing::debug!(%from, what, "refused: incarnation or Lamport time implausibly far ahead");
    }

    /// Count and log a refused input; its error.
    fn refused(&mut self, from: SocketAddr, r: Refusal) -> InputError {
        let s = &mut self.fx.stats;
        let (counter, err) = match r {
            Refusal::NoKey => (&mut s.sealed_no_key, InputError::NoKeyOpens),
            Refusal::Label => (&mut s.label_mismatches, InputError::LabelMismatch),
            Refusal::Plaintext => (&mut s.plaintext_refused, InputError::PlaintextRefused),
            Refusal::Unexpected => (&mut s.sealed_unexpected, InputError::SealedWithoutKeyring),
            Refusal::Truncated => (&mut s.sealed_truncated, InputError::SealedTruncated),
            // `rejected` reports decode errors with their cause; this is the generic form.
            Refusal::Undecodable => (
                &mut s.decode_errors,
                InputError::Decode(wire::DecodeError::Malformed),
            ),
        };
        *counter += 1;
        self.fx
            .refusals
            .get_or_insert_with(Default::default)
            .note(self.now, r, from);
        err
    }

    /// Give an opened envelope's buffer back for the next one.
    fn recycle(&mut self, body: Body) {
        if let (Body::Sealed(buf), Some(sec)) = (body, self.fx.sec.as_deref_mut()) {
            sec.recycle(buf);
        }
    }

    /// This node's security state, created (taking the entropy) the first time it is needed;
    /// `None` when the node was created without entropy.
    fn security(&mut self) -> Option<&mut Security> {
        if self.fx.sec.is_none() {
            let entropy = self.entropy.take()?;
            self.fx.sec = Some(Box::new(Security::new(&entropy, &self.fx.header)));
        }
        self.fx.sec.as_deref_mut()
    }

    /// Replace this node's keyring (`None`: back to plaintext), at once and on this node only;
    /// the `gossip_verify_*` flags are kept (they start from the configuration's). Use it to
    /// move a running cluster to encryption and back node by node (see
    /// [`Node::set_gossip_verify`]), or after an operator changed the keyring file. Refused
    /// with [`ApiError::NoEntropy`] on a node created without entropy.
    pub fn set_keyring(&mut self, keyring: Option<Keyring>) -> Result<(), ApiError> {
        let (incoming, outgoing) = (
            self.cfg.gossip_verify_incoming,
            self.cfg.gossip_verify_outgoing,
        );
        let fresh = self.fx.sec.is_none();
        if keyring.is_none() && fresh {
            return Ok(());
        }
        let sec = self.security().ok_or(ApiError::NoEntropy)?;
        if fresh {
            sec.verify_incoming = incoming;
            sec.verify_outgoing = outgoing;
        }
        sec.keyring = keyring;
        sec.version += 1;
        Ok(())
    }

    /// A number that changes whenever this node's keyring changes — through
    /// [`Node::set_keyring`] or a key operation, local or cluster-wide — so a driver knows
    /// when to write its keyring file. 0 until the node first has a keyring.
    pub fn keyring_version(&self) -> u64 {
        self.fx.sec.as_deref().map_or(0, |s| s.version)
    }

    /// Set the rolling-adoption flags: `incoming` refuses plaintext input, `outgoing` seals
    /// what this node sends (both only matter with a keyring). A plaintext cluster moves to
    /// encryption node by node: give every node its keyring with both off, then turn
    /// `outgoing` on everywhere, then `incoming`; and back in the reverse order. Refused with
    /// [`ApiError::NoEntropy`] on a node created without entropy.
    pub fn set_gossip_verify(&mut self, incoming: bool, outgoing: bool) -> Result<(), ApiError> {
        let sec = self.security().ok_or(ApiError::NoEntropy)?;
        sec.verify_incoming = incoming;
        sec.verify_outgoing = outgoing;
        Ok(())
    }

    /// This node's keyring, if it has one.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.fx.sec.as_deref().and_then(|s| s.keyring.as_ref())
    }

    /// The rolling-adoption flags in force: (`gossip_verify_incoming`,
    /// `gossip_verify_outgoing`).
    pub fn gossip_verify(&self) -> (bool, bool) {
        match self.fx.sec.as_deref() {
            Some(s) => (s.verify_incoming, s.verify_outgoing),
            None => (
                self.cfg.gossip_verify_incoming,
                self.cfg.gossip_verify_outgoing,
            ),
        }
    }

    /// Route one message; `near` is where a prefetch found the member it is about, if any.
    fn handle_message(&mut self, from: SocketAddr, msg: Message, near: Near) {
        self.swim.reached(self.now);
        if self.clocks_now().too_far(&msg) {
            self.far_ahead(from, "lamport time");
            return;
        }
        match msg {
            Message::Ping {
                seq,
                target,
                digest,
            } => {
                let theirs = self.swim.on_ping(
                    from,
                    seq,
                    &target,
                    digest,
                    self.serf.event_mark(),
                    &mut cx!(self),
                );
                if let Some(d) = theirs {
                    self.compare_digest(from, d);
                }
            }
            Message::CheckPing { seq, target } => {
                self.swim.on_check_ping(from, seq, &target, &mut cx!(self))
            }
            Message::StreamPing {
                seq,
                target,
                reply_to,
            } => self
                .swim
                .on_stream_ping(from, seq, &target, reply_to, &mut cx!(self)),
            Message::Ack { seq, digest } => {
                if let Some(done) = self.swim.check_answered(from, seq, &mut cx!(self)) {
                    self.check_done(done);
                } else if let Some(d) = self.swim.on_ack(from, seq, digest, &mut cx!(self)) {
                    self.compare_digest(from, d);
                }
            }
            Message::Nack { seq } => {
                if let Some(s) = self.swim.on_nack(from, seq, &mut cx!(self)) {
                    self.apply_suspect(s, true, Near::UNKNOWN);
                }
            }
            Message::IndirectPing { seq, target, addr } => {
                self.swim
                    .on_indirect_ping(from, seq, target, addr, &mut cx!(self))
            }
            Message::Alive(a) => {
                let new = self.members.get_near(a.name.as_bytes(), near).is_none();
                if !new || self.admit_new_member(from) {
                    self.apply_alive(a, true, near);
                }
            }
            Message::Suspect(s) => self.apply_suspect(s, true, near),
            Message::Dead(d) => self.apply_dead(d, true, near),
            // Datagrams carrying push-pull were rejected before anything was applied.
            Message::PushPull(p) => self.on_push_pull(from, *p),
            Message::LeaveIntent(i) => self.serf.on_leave_intent(i, true, &mut cx!(self)),
            Message::UserEvent(e) => self.serf.on_user_event(e, true, true, &mut cx!(self)),
            Message::Query(q) => {
                self.serf.on_query(*q, &mut cx!(self));
                self.answer_key_queries();
            }
            Message::QueryResponse(r) => {
                let out = self.serf.on_query_response(r, &mut cx!(self));
                self.on_serf_outcome(out);
            }
            Message::RelayResponse { to, resp } => {
                // Relay only to a live member: the asker is one.
                if self.members.iter().any(|r| r.is_live() && r.addr() == to) {
                    self.send_datagram(to, &[Message::QueryResponse(resp)]);
                } else {
                    self.fx.stats.replies_refused += 1;
                    tracing::debug!(%from, %to, "relay refused: not a live member's address");
                }
            }
            Message::Direct { from, payload } => self.serf.on_direct(from, payload, &mut cx!(self)),
            Message::DirectAcked {
                from: sender,
                id,
                payload,
            } => self
                .serf
                .on_direct_acked(from, sender, id, payload, &mut cx!(self)),
            Message::DirectAck { from, id } => self.serf.on_direct_ack(from, id, &mut cx!(self)),
        }
    }

    /// Tell the node that a reliable transmit to `to` could not be delivered (connect or write
    /// failed, or timed out). `message` is the transmit's [`Transmit::message`]: the node then
    /// reports that direct message as failed ([`Event::SendFailed`]).
    pub fn handle_send_failure(
        &mut self,
        now: Timestamp,
        to: SocketAddr,
        message: Option<crate::MessageId>,
    ) {
        self.advance(now);
        self.fx.stats.send_failures += 1;
        for done in self.life.seed_failed(to) {
            self.join_completed(done);
        }
        if let Some(id) = message {
            self.serf.message_undelivered(to, id, &mut cx!(self));
        }
    }

    /// Fire every internal timer due at `now`. Call when the deadline from
    /// [`Node::poll_timeout`] has passed; calling early or late is harmless. A timer that the
    /// handlers schedule for `now` or earlier fires at the next call (`poll_timeout` reports
    /// it), so the call always returns, even at [`Timestamp::MAX`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
        // Only timers due when the call began: re-armed ones wait for the next call.
        let mark = self.fx.timers.mark();
        while let Some(kind) = self.fx.timers.pop_due(self.now, mark) {
            if self.run == RunState::Left {
                return;
            }
            match kind {
                TimerKind::Swim(t) => self.on_swim_timer(t),
                TimerKind::Dissemination(t) => self.on_diss_timer(t),
                TimerKind::Lifecycle(t) => {
                    let out = self.life.on_timer(t, self.run, &mut cx!(self));
                    self.on_life_outcome(out);
                }
                TimerKind::Serf(t) => {
                    let out = self.serf.on_timer(t, &mut cx!(self));
                    self.on_serf_outcome(out);
                }
            }
        }
    }

    /// A failure-detection timer fired: the detector decides (and recognises stale timers);
    /// its verdict is applied here, then the next probe starts while the node runs.
    pub(crate) fn on_swim_timer(&mut self, t: SwimTimer) {
        let out = self.swim.on_timer(t, &mut cx!(self));
        if let Some(done) = out.check {
            self.check_done(done);
        }
        match out.verdict {
            Some(Verdict::Suspect(s)) => self.apply_suspect(s, true, Near::UNKNOWN),
            Some(Verdict::Dead(d, gossip)) => self.apply_dead(d, gossip, Near::UNKNOWN),
            None => {}
        }
        if out.next_probe && self.run == RunState::Running {
            let events = self.serf.event_mark();
            self.swim.start_probe(events, &mut cx!(self));
        }
    }

    /// A dissemination timer fired: a push-pull it asks for is sent with the Serf layer's
    /// share; after a gossip tick a graceful leave may have sent its announcement out.
    fn on_diss_timer(&mut self, t: DissTimer) {
        let gossip = t == DissTimer::GossipTick;
        let running = self.run == RunState::Running;
        if let Some(r) = self.diss.on_timer(t, running, &mut cx!(self)) {
            self.send_push_pull(r.to, r.id, true, false);
        }
        if gossip {
            let out = self.life.leave_progress(self.run, &mut cx!(self));
            self.on_life_outcome(out);
        }
    }

    /// Act on what the lifecycle part concluded.
    fn on_life_outcome(&mut self, out: lifecycle::Outcome) {
        match out {
            lifecycle::Outcome::Nothing => {}
            lifecycle::Outcome::Joined(done) => self.join_completed(done),
            lifecycle::Outcome::Left => self.finish_leave(StopReason::Left),
        }
    }

    /// A join completed: report it; when a seed answered, the cluster's size is known and
    /// periodic push-pull is re-armed for it.
    pub(crate) fn join_completed(&mut self, done: JoinDone) {
        tracing::debug!(
            answered = done.answered,
            contacted = done.contacted,
            members = self.members.len(),
            "join completed"
        );
        self.emit(Event::JoinCompleted {
            answered: done.answered,
            contacted: done.contacted,
        });
        if done.answered > 0 {
            self.diss.rearm_push_pull(&mut cx!(self));
            self.diss.schedule_follow_up(&mut cx!(self));
        }
    }

    /// What a push-pull carries of the Serf layer.
    pub(crate) fn serf_share(&self) -> SerfShare {
        self.serf.share()
    }

    /// Act on what the Serf layer concluded.
    fn on_serf_outcome(&mut self, out: serf::Outcome) {
        match out {
            serf::Outcome::Nothing => {}
            serf::Outcome::NameLost => self.finish_leave(StopReason::NameConflictLost),
            serf::Outcome::PushPull(r) => self.send_push_pull(r.to, r.id, true, false),
            serf::Outcome::KeyResponse { resp, done } => {
                if self.fx.hc.is_some() {
                    let answer = wire::hashicorp::read_key_answer(&resp.payload);
                    self.keys.on_read_answer(resp.id, resp.from, answer);
                } else {
                    let sec = self.fx.sec.as_deref();
                    self.keys.on_answer(sec, resp.id, resp.from, &resp.payload);
                }
                if done {
                    let out = self.serf.query_deadline(resp.id, &mut cx!(self));
                    self.on_serf_outcome(out);
                }
            }
            serf::Outcome::KeyDone(id) => {
                if let Some(r) = self.keys.done(id) {
                    self.emit(Event::KeyOp(r));
                }
            }
        }
    }

    /// Answer the key-operation queries received (see `keyring::manager`; in the HashiCorp
    /// profile Serf's, see `wire::hashicorp::keys`): carry each out on
    /// this node's keyring and send the answer to the asker (this node's own answer to its
    /// own operation is counted at once).
    fn answer_key_queries(&mut self) {
        for q in self.serf.take_key_inbox() {
            let sec = self.fx.sec.as_deref_mut();
            let (payload, _changed) = if self.fx.hc.is_some() {
                // Serf's key queries (`serf keys`), answered in Serf's format.
                wire::hashicorp::answer_key_query(sec, &q.name, &q.payload)
            } else {
                KeyManager::answer(sec, &q.name, &q.payload)
            };
            let resp = wire::QueryResp {
                ltime: q.ltime,
                id: q.id,
                from: self.me.clone(),
                ack: false,
                payload,
            };
            if q.from == self.me && q.addr == self.addr {
                let out = self.serf.on_query_response(resp, &mut cx!(self));
                self.on_serf_outcome(out);
            } else {
                self.serf
                    .send_query_resp(q.addr, q.relay_factor, resp, &mut cx!(self));
            }
        }
    }

    /// Start a cluster-wide key operation: checked locally, then asked of every member.
    fn key_op(&mut self, now: Timestamp, op: KeyOp, key: &[u8]) -> Result<KeyOpId, ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        if !self.cfg.wire.has_serf() {
            // Serf's key queries need Serf's layer; a Go memberlist program has no such thing.
            return Err(ApiError::NotInProfile);
        }
        let hc = self.fx.hc.is_some();
        let sec = self
            .fx
            .sec
            .as_deref_mut()
            .ok_or(ApiError::EncryptionDisabled)?;
        if !sec.sealing() {
            return Err(ApiError::EncryptionDisabled);
        }
        keyring::precheck(sec, op, key).map_err(ApiError::Keyring)?;
        let (name, payload) = if hc {
            // Serf's key queries, as `serf keys` asks them (see `wire::hashicorp::keys`).
            wire::hashicorp::key_request(op, key)
        } else {
            KeyManager::request(sec, op, key).ok_or(ApiError::EncryptionDisabled)?
        };
        let members = self.members.alive();
        // Answers also travel through two random members, so a lossy network rarely loses
        // one (the operation is reported incomplete, never wrong, when it does).
        let params = QueryParams {
            relay_factor: 2,
            ..QueryParams::default()
        };
        let id = self.serf.query(name, payload, params, &mut cx!(self))?;
        self.keys.started(id.0, op, members);
        self.answer_key_queries();
        Ok(KeyOpId(id.0))
    }

    /// Install `key` (16, 24 or 32 bytes) in every member's keyring, as a secondary key: the
    /// first step of a rotation (then [`Node::use_key`], then [`Node::remove_key`] of the old
    /// one). Needs this node to seal what it sends. The outcome arrives as [`Event::KeyOp`].
    pub fn install_key(&mut self, now: Timestamp, key: &[u8]) -> Result<KeyOpId, ApiError> {
        self.key_op(now, KeyOp::Install, key)
    }

    /// Make `key`, installed everywhere, every member's primary key. Outcome as
    /// [`Event::KeyOp`].
    pub fn use_key(&mut self, now: Timestamp, key: &[u8]) -> Result<KeyOpId, ApiError> {
        self.key_op(now, KeyOp::Use, key)
    }

    /// Remove `key` from every member's keyring. A member refuses to remove its primary key
    /// (and this node refuses at once when it is its own primary). Outcome as
    /// [`Event::KeyOp`].
    pub fn remove_key(&mut self, now: Timestamp, key: &[u8]) -> Result<KeyOpId, ApiError> {
        self.key_op(now, KeyOp::Remove, key)
    }

    /// Ask every member for its keys: [`crate::KeyOpResult::keys`] says how many members hold each
    /// key, [`crate::KeyOpResult::primary_keys`] how many use each as primary. Outcome as
    /// [`Event::KeyOp`].
    pub fn list_keys(&mut self, now: Timestamp) -> Result<KeyOpId, ApiError> {
        self.key_op(now, KeyOp::List, &[])
    }

    /// Send this node's table to `to` in a push-pull.
    pub(crate) fn send_push_pull(&mut self, to: SocketAddr, id: u32, request: bool, join: bool) {
        let share = self.serf_share();
        push_pull::send(&mut cx!(self), &share, to, id, request, join);
    }

    /// A peer's view digest arrived: maybe repair (see `dissemination::repair`).
    pub(crate) fn compare_digest(&mut self, peer: SocketAddr, theirs: Digest) {
        let running = self.run == RunState::Running;
        let events = self.serf.event_mark();
        if let Some(r) = self
            .diss
            .compare_digest(peer, theirs, running, events, &mut cx!(self))
        {
            self.send_push_pull(r.to, r.id, true, false);
        }
    }

    /// Leave gracefully: announce the leave intent, stop probing, and run the leave's phases
    /// (at once done when no other member is live).
    fn start_leave(&mut self) {
        self.run = RunState::Leaving;
        self.swim.stop_probing();
        self.serf.announce_leave(&mut cx!(self));
        if self.members.live() <= 1 {
            self.finish_leave(StopReason::Left);
            return;
        }
        self.life.leave_started(&mut cx!(self));
    }

    /// The node is gone: it marks itself left, stops every timer and ignores input from now
    /// on. Reached at the end of a graceful leave, or when this node lost its name.
    pub(crate) fn finish_leave(&mut self, reason: StopReason) {
        if self.run == RunState::Left {
            return;
        }
        tracing::debug!(name = %self.me, %reason, "node inert");
        self.stop_reason = Some(reason);
        let me = self.me.clone();
        self.members.set_status(&me, MemberStatus::Left, self.now);
        self.run = RunState::Left;
        self.fx.timers.clear();
        self.swim.stop();
        self.emit(Event::LeaveCompleted);
    }

    /// Join a cluster through `seeds`: a push-pull exchange with each (this node's own address
    /// is skipped). [`Event::JoinCompleted`] reports how many answered, once all have answered
    /// or failed, or after `tcp_timeout`.
    pub fn join(&mut self, now: Timestamp, seeds: &[SocketAddr]) -> Result<(), ApiError> {
        self.join_with(now, seeds, false)
    }

    /// [`Node::join`], choosing whether to replay the cluster's recent user events
    /// (`ignore_old` false, as `join` does) or to skip every event older than the join.
    pub fn join_with(
        &mut self,
        now: Timestamp,
        seeds: &[SocketAddr],
        ignore_old: bool,
    ) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        let mut seeds: Vec<SocketAddr> =
            seeds.iter().copied().filter(|a| *a != self.addr).collect();
        seeds.sort();
        seeds.dedup();
        if seeds.is_empty() {
            return Err(ApiError::NoSeeds);
        }
        // The join intent (a new incarnation of our alive) first, so that the push-pull
        // carries it and the seeds do not gossip the old incarnation as news.
        self.serf.announce_join(&mut cx!(self));
        self.serf.remember_seeds(&seeds, self.now);
        for r in self.life.start_join(&seeds, ignore_old, &mut cx!(self)) {
            self.send_push_pull(r.to, r.id, true, true);
        }
        Ok(())
    }

    /// Leave the cluster gracefully: announce a leave intent (others mark this node leaving),
    /// then the departure itself (others mark it left, not failed), each until it has been sent
    /// out or `broadcast_timeout` passed; then emit [`Event::LeaveCompleted`] and go inert.
    pub fn leave(&mut self, now: Timestamp) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        self.start_leave();
        Ok(())
    }

    /// Replace this node's tags and announce them with a new incarnation.
    pub fn set_tags(&mut self, now: Timestamp, tags: Tags) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        let size = wire::tags_encoded_len(&tags);
        if size > self.cfg.meta_max_size {
            return Err(ApiError::TagsTooLarge {
                size,
                limit: self.cfg.meta_max_size,
            });
        }
        let me = self.me.clone();
        let now = self.now;
        self.members.set_tags(&me, &tags);
        let rec = self.members.get(&me).expect("self is always in the table");
        // Incarnations never wrap: at u32::MAX the node stays there (see `refute`).
        let inc = rec.incarnation.saturating_add(1);
        self.members.set_incarnation(&me, inc, now);
        self.broadcast_self();
        Ok(())
    }

    /// Fire a user event: every member (this one included) receives it once, as
    /// [`Event::User`]. `coalesce` lets receivers that coalesce user events keep only the
    /// latest per name. Name plus payload may not exceed `user_event_size_limit`.
    pub fn user_event(
        &mut self,
        now: Timestamp,
        name: &str,
        payload: impl Into<Bytes>,
        coalesce: bool,
    ) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        if !self.cfg.wire.has_serf() {
            return Err(ApiError::NotInProfile);
        }
        self.serf
            .user_event(name, payload.into(), coalesce, &mut cx!(self))
    }

    /// The default query timeout: gossip_interval · query_timeout_mult · ceil(log10(n + 1)).
    pub fn default_query_timeout(&self) -> std::time::Duration {
        crate::formulas::query_timeout(&self.cfg, self.members.live())
    }

    /// Ask the cluster: the query is gossiped to every member; those `params` selects see
    /// [`Event::Query`]. Answers arrive as [`Event::QueryAck`] and [`Event::QueryResponse`];
    /// [`Event::QueryDone`] ends it.
    pub fn query(
        &mut self,
        now: Timestamp,
        name: &str,
        payload: impl Into<Bytes>,
        params: QueryParams,
    ) -> Result<QueryId, ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        let serf_internal = self.fx.hc.is_some()
            && (wire::hashicorp::is_key_query(name) || wire::hashicorp::is_conflict_query(name));
        if name.starts_with("_rookery/") || serf_internal {
            return Err(ApiError::ReservedName);
        }
        if !self.cfg.wire.has_serf() {
            return Err(ApiError::NotInProfile);
        }
        self.serf
            .query(name, payload.into(), params, &mut cx!(self))
    }

    /// Answer a query this node was selected by (once, before its deadline; also while
    /// leaving).
    pub fn respond(
        &mut self,
        now: Timestamp,
        query: &QueryHandle,
        payload: impl Into<Bytes>,
    ) -> Result<(), ApiError> {
        self.advance(now);
        if self.run == RunState::Left {
            return Err(ApiError::NotRunning);
        }
        self.serf.respond(query, payload.into(), &mut cx!(self))
    }

    /// Send `payload` reliably to the member named `to` (alive or suspect); returns the
    /// message's number. The transmit carrying it names the number
    /// ([`Transmit::message`]); if the driver cannot deliver it, [`Event::SendFailed`] reports
    /// that message. Delivered means written to the peer's connection, not processed: use
    /// [`Node::send_acked`] for a receipt from the peer's core.
    pub fn send(
        &mut self,
        now: Timestamp,
        to: &str,
        payload: impl Into<Bytes>,
    ) -> Result<crate::MessageId, ApiError> {
        self.send_with(now, to, payload.into(), false)
    }

    fn send_with(
        &mut self,
        now: Timestamp,
        to: &str,
        payload: Bytes,
        acked: bool,
    ) -> Result<crate::MessageId, ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        // memberlist's user messages carry direct messages without Serf's layer; a receipt
        // has no counterpart, and Serf's layer has no direct messages.
        if self.fx.hc.is_some() && (self.cfg.wire.has_serf() || acked) {
            return Err(ApiError::NotInProfile);
        }
        self.serf.send(to, payload, acked, &mut cx!(self))
    }

    /// Like [`Node::send`], and the receiver's core confirms receipt (the message reached its
    /// event queue): exactly one of [`Event::MessageAcked`] or [`Event::SendFailed`] follows
    /// for the returned number, the latter at the latest twice `tcp_timeout` later. At most
    /// `max_unacked_messages` wait at once ([`ApiError::TooManyUnacked`] beyond).
    pub fn send_acked(
        &mut self,
        now: Timestamp,
        to: &str,
        payload: impl Into<Bytes>,
    ) -> Result<crate::MessageId, ApiError> {
        self.send_with(now, to, payload.into(), true)
    }

    /// Send `payload` reliably to every other live member; returns each member it went to with
    /// the number of its message (outcomes as for [`Node::send`]).
    pub fn broadcast(
        &mut self,
        now: Timestamp,
        payload: impl Into<Bytes>,
    ) -> Result<Vec<(Name, crate::MessageId)>, ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        if self.fx.hc.is_some() && self.cfg.wire.has_serf() {
            return Err(ApiError::NotInProfile);
        }
        self.serf.broadcast(payload.into(), &mut cx!(self))
    }

    /// Force a failed member to left across the cluster (a leave intent on its behalf); with
    /// `prune` every member also erases it at once instead of keeping a tombstone.
    pub fn remove_failed(
        &mut self,
        now: Timestamp,
        name: &str,
        prune: bool,
    ) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        self.serf.remove_failed(name, prune, &mut cx!(self))
    }

    /// Forget the member `name` on this node only — the gossip cluster's "close this remote":
    /// it leaves this node's view at once ([`Event::MemberReaped`]), so this node no longer
    /// probes it, gossips to it, sends it push-pulls or tries to reconnect to it. Gossip and
    /// push-pull about the life this node forgot (the same address, the same or an older
    /// incarnation) are ignored from then on; a newer life — it rejoined (a join announces a
    /// new incarnation), changed its tags, refuted a suspicion, or restarted elsewhere — brings
    /// it back as a [`Event::MemberJoined`]. The other members keep it: this is a local
    /// decision, not [`Node::remove_failed`].
    pub fn forget_member(&mut self, now: Timestamp, name: &str) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        if name == &*self.me {
            return Err(ApiError::IsSelf);
        }
        let Some(rec) = self.members.get(name) else {
            return Err(ApiError::UnknownMember(name.to_string()));
        };
        let (addr, incarnation, key) = (rec.addr(), rec.incarnation, rec.name.to_name());
        let Some(last) = self.members.remove(name, self.now) else {
            return Err(ApiError::UnknownMember(name.to_string()));
        };
        if self.forgotten.len() >= self.cfg.max_members {
            self.forgotten.pop_first();
        }
        self.forgotten.insert(key, (addr, incarnation));
        tracing::debug!(member = %name, %addr, incarnation, "member forgotten on request");
        self.emit(Event::MemberReaped(last));
        Ok(())
    }

    /// The next bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.fx.transmits.pop_front();
        if t.is_none() {
            release_burst(&mut self.fx.transmits);
        }
        t
    }

    /// The next event, if any. A [`Event::Lagged`] comes first when events were lost (see
    /// [`crate::EventQueue`] for the overflow policy).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.fx.events.pop()
    }

    /// The next deadline at which [`Node::handle_timeout`] must be called; `None` once the
    /// node has left.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.run == RunState::Left {
            return None;
        }
        self.fx.timers.next_deadline()
    }

    /// Every member this node knows, itself included, failed and left tombstones included.
    pub fn members(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|r| self.members.snapshot(r))
            .collect()
    }

    /// One member by name.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.members.member(name)
    }

    /// This node as the cluster sees it.
    pub fn local_member(&self) -> Member {
        self.members
            .member(&self.me)
            .expect("self is always in the table")
    }

    /// Members alive at the failure-detection level — status [`crate::MemberStatus::Alive`], or
    /// [`crate::MemberStatus::Leaving`] while the departure goes out — this node included while it
    /// runs. A leaving member that is also suspected is listed as `Leaving` by
    /// [`Node::members`] but is not counted here: it is not alive at that level.
    pub fn alive_count(&self) -> usize {
        self.members.alive()
    }

    /// Members known, in any status.
    pub fn num_members(&self) -> usize {
        self.members.len()
    }

    /// Traffic and drop counters.
    pub fn stats(&self) -> &Stats {
        &self.fx.stats
    }

    /// How full each bounded queue is, with its bound.
    pub fn queue_depths(&self) -> QueueDepths {
        let c = &self.cfg;
        let [intents, event_ring, pending_queries] = self.serf.depths(c);
        QueueDepths {
            broadcast: (self.fx.queue.len(), c.max_broadcast_queue),
            serf: (self.fx.serf_queue.len(), c.max_queue_depth),
            events: (
                self.fx.events.len(),
                c.max_pending_events.saturating_add(c.max_members),
            ),
            inbox: (self.fx.events.inbox_len(), c.max_inbox),
            transmits: (self.fx.transmits.len(), c.max_pending_transmits),
            intents,
            event_ring,
            pending_queries,
            relays: (self.swim.relays_len(), c.max_indirect_relays),
        }
    }

    /// Lifeguard's local health score: 0 is healthy; each point stretches the probe interval.
    pub fn health_score(&self) -> u32 {
        self.swim.health()
    }

    /// Updates waiting in the membership broadcast queue.
    pub fn broadcast_queue_len(&self) -> usize {
        self.fx.queue.len()
    }

    /// Updates waiting in the Serf broadcast queue (intents, user events, queries).
    pub fn serf_queue_len(&self) -> usize {
        self.fx.serf_queue.len()
    }

    /// The member, event and query Lamport clocks.
    pub fn clocks(&self) -> (u64, u64, u64) {
        self.serf.clocks()
    }

    /// True once the node has left and ignores input.
    pub fn has_left(&self) -> bool {
        self.run == RunState::Left
    }

    /// Why the node went inert ([`StopReason::Left`] or [`StopReason::NameConflictLost`]);
    /// `None` while it takes part (until [`Node::has_left`] turns true).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    // ---- helpers shared by the protocol modules ----

    /// Report an event, through the coalescer when coalescing is on.
    pub(crate) fn emit(&mut self, event: Event) {
        self.serf.emit(event, &mut cx!(self));
    }

    /// The narrow context a part works in, borrowed from this node's shared state.
    pub(crate) fn cx(&mut self) -> Cx<'_> {
        cx!(self)
    }

    /// [`Cx::send_datagram`].
    pub(crate) fn send_datagram(&mut self, to: SocketAddr, msgs: &[Message]) {
        self.cx().send_datagram(to, msgs)
    }

    /// [`Cx::enqueue`].
    pub(crate) fn enqueue(&mut self, key: Name, msg: &Message) {
        self.cx().enqueue(key, msg)
    }

    /// [`Cx::enqueue_alive`].
    pub(crate) fn enqueue_alive(&mut self, key: Name, a: wire::Alive) {
        self.cx().enqueue_alive(key, a)
    }

    /// [`Cx::self_alive`].
    pub(crate) fn self_alive(&mut self) -> Message {
        self.cx().self_alive()
    }

    /// [`Cx::broadcast_self`].
    pub(crate) fn broadcast_self(&mut self) {
        self.cx().broadcast_self()
    }
}
