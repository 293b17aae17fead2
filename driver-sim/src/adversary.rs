//! The swarm's adversary: forged messages from an address outside the cluster, built with the
//! core's own encoders (`rookery_core::fuzzing`), each an attack that once did damage and that
//! the core must now refuse or outlast (`rookery_core::plausible`). A [`crate::Step::Forge`]
//! hands the forged datagrams and frames to the nodes it names, as if the adversary had sent
//! them; the invariants then judge the cluster as for any other fault (no false failure, no
//! false leave, clocks that never jump, ...), and a swarm case fails if any node sent traffic
//! to the address the adversary aims at ([`AIM`], [`crate::NetStats::to_aim`]).
//!
//! Without a keyring one thing stays possible by design: claiming the name of a member that
//! this node holds as failed or left, from a new address, is taken as that member restarting
//! there (as Serf takes it), and the adversary's address is then probed like any member's.
//! Only the keyring tells the two apart.

use std::net::SocketAddr;

use bytes::Bytes;
use rookery_core::fuzzing::{self, WireMessage};
use rookery_core::plausible::MAX_INCARNATION_STEP;
use rookery_core::{Input, Tags};
use serde::{Deserialize, Serialize};

use crate::sim::{node_addr, Sim};

/// Where the adversary sends from: no simulated node has this address.
pub const ADVERSARY: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(127, 250, 0, 1),
    7946,
));

/// Where the adversary wants the cluster's traffic aimed: no simulated node either.
pub const AIM: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(127, 250, 0, 2),
    7946,
));

/// One attack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "attack", rename_all = "snake_case")]
pub enum Attack {
    /// "`victim` left / failed / is suspect", at an incarnation far ahead of the victim's
    /// own, and at the top of the range: must be refused (the victim stays alive).
    FarAccusation {
        /// The accused node.
        victim: usize,
    },
    /// A user event, an alive message, a leave intent and a query at Lamport time
    /// `u64::MAX`: must be refused (clocks do not jump; nobody is shown leaving).
    TopLamport {
        /// The node the alive message and leave intent are about.
        victim: usize,
    },
    /// Requests that point their answers at [`AIM`]: a query (ack, relay factor 255), a relay
    /// request, an indirect probe of `victim` at [`AIM`], a stream ping and a push-pull
    /// request with [`AIM`] as reply address. Nothing may be sent there.
    Aim {
        /// The member named in the indirect probe and stream ping.
        victim: usize,
    },
    /// `victim`'s name claimed from the adversary's address at a high incarnation: the victim
    /// refutes and holds a vote that nobody answers for the adversary; it keeps its name.
    ClaimName {
        /// The node whose name is claimed.
        victim: usize,
    },
}

impl Attack {
    /// Every node index the attack names.
    pub fn nodes(&self) -> Vec<usize> {
        match self {
            Attack::FarAccusation { victim }
            | Attack::TopLamport { victim }
            | Attack::Aim { victim }
            | Attack::ClaimName { victim } => vec![*victim],
        }
    }

    /// The forged inputs, as a receiving node is handed them. Built from the victim's current
    /// incarnation (the adversary is omniscient: it may have listened to the gossip).
    pub fn inputs(&self, sim: &Sim) -> Vec<Input> {
        let name = |i: usize| sim.name(i).to_string();
        let datagram = |msgs: &[WireMessage]| Input::Datagram {
            from: ADVERSARY,
            payload: Bytes::from(fuzzing::encode_datagram(None, msgs)),
        };
        let stream = |msg: &WireMessage| Input::Stream {
            from: ADVERSARY,
            body: Bytes::from(fuzzing::encode_frame_body(None, msg)),
        };
        match self {
            Attack::FarAccusation { victim } => {
                let v = name(*victim);
                let inc = sim.node(*victim).local_member().incarnation;
                let far = inc.wrapping_add(MAX_INCARNATION_STEP).wrapping_add(1 << 10);
                vec![datagram(&[
                    WireMessage::dead(&v, far, &v),
                    WireMessage::dead(&v, far, "adversary"),
                    WireMessage::suspect(&v, far, "adversary"),
                    WireMessage::dead(&v, u32::MAX, &v),
                    WireMessage::suspect(&v, inc.wrapping_add(1 << 30), "adversary"),
                ])]
            }
            Attack::TopLamport { victim } => {
                let v = name(*victim);
                let top = u64::MAX;
                vec![datagram(&[
                    WireMessage::user_event(top, "forged", b""),
                    WireMessage::alive_at(&v, node_addr(*victim), 0, top),
                    WireMessage::leave_intent(&v, top, false),
                    WireMessage::query(top, 1, &v, node_addr(*victim), "forged", 0, false),
                ])]
            }
            Attack::Aim { victim } => {
                let v = name(*victim);
                vec![
                    datagram(&[
                        WireMessage::query(1, 7, "adversary", AIM, "forged", 255, true),
                        WireMessage::relay_response(AIM, 1, 7, &v),
                        WireMessage::indirect_ping(9, &v, AIM),
                    ]),
                    stream(&WireMessage::stream_ping(10, &v, AIM)),
                    stream(&WireMessage::push_pull(
                        11,
                        true,
                        false,
                        AIM,
                        "adversary",
                        Vec::new(),
                    )),
                ]
            }
            Attack::ClaimName { victim } => {
                let v = name(*victim);
                let inc = sim.node(*victim).local_member().incarnation;
                vec![datagram(&[WireMessage::alive(
                    &v,
                    ADVERSARY,
                    inc.wrapping_add(100),
                    Tags::new(),
                )])]
            }
        }
    }
}
