//! Serf's name-conflict internal query on the HashiCorp profile. A serf agent whose name
//! memberlist reports taken from another address asks the cluster `_serf_conflict` with its
//! name as the raw payload; every member other than the one so named answers with its view
//! of that member, Serf's conflict response `[type 6][msgpack Member]` (nil when it knows no
//! member by that name), and the asker keeps the name only if a majority of the answers
//! hold its own address and port. A rookery node on the profile answers such queries inside
//! the core (never surfacing them as [`crate::Event::Query`]); its view carries the member's
//! name, address, port, tags and status, and as versions the range this node advertises
//! (rookery keeps no other member's version bytes; the asker reads only address and port).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::serf::{Member, SerfMsg};
use super::Versions;
use crate::identity::{MemberStatus, Tags};

/// The name of Serf's conflict query.
pub(crate) const CONFLICT_QUERY: &str = "_serf_conflict";

/// Whether `name` is Serf's conflict query.
pub(crate) fn is_conflict_query(name: &str) -> bool {
    name == CONFLICT_QUERY
}

/// A member as Serf's conflict response describes it.
pub(crate) fn serf_member(
    name: &str,
    addr: SocketAddr,
    tags: &Tags,
    status: MemberStatus,
    versions: Versions,
) -> Member {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let v = versions.to_bytes();
    Member {
        name: name.to_string(),
        addr: Some(ip),
        port: addr.port(),
        tags: Some(tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        // Serf has no suspect status: a suspect member is still alive to it.
        status: match status {
            MemberStatus::Alive | MemberStatus::Suspect => 1,
            MemberStatus::Leaving => 2,
            MemberStatus::Left => 3,
            MemberStatus::Failed => 4,
        },
        versions: [v[0], v[1], v[2], v[3], v[4], v[5]],
    }
}

/// The answer to a conflict query about `payload` (the contested name), from a node named
/// `me` whose view of members is `view`: `None` when Serf would not answer (the query is
/// about this node itself), else Serf's conflict response holding the member `view` finds
/// by that name, or nil.
pub(crate) fn answer_conflict_query(
    me: &str,
    payload: &[u8],
    view: impl FnOnce(&str) -> Option<Member>,
) -> Option<Bytes> {
    // Serf reads the payload as a Go string: any bytes; a name that is not UTF-8 names no
    // member here.
    let name = std::str::from_utf8(payload).ok();
    if name == Some(me) {
        return None;
    }
    let member = name.and_then(view);
    Some(Bytes::from(SerfMsg::ConflictResponse(member).encode()))
}

/// The address a conflict response holds for the contested name: `None` when the responder
/// knows no member by that name (nil), or the answer is not a conflict response or holds no
/// usable address. Serf compares the IP and the port; so does the tally here.
pub(crate) fn conflict_answer_addr(payload: &[u8]) -> Option<SocketAddr> {
    let Ok(SerfMsg::ConflictResponse(Some(m))) = SerfMsg::decode(payload) else {
        return None;
    };
    let ip: IpAddr = match m.addr.as_deref()? {
        b if b.len() == 4 => <[u8; 4]>::try_from(b).ok()?.into(),
        b if b.len() == 16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?);
            // Go writes an IPv4 address as 16 bytes when it holds it in that form.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, m.port))
}

/// The member a conflict response holds (`None`: the responder knows no member by the
/// name), or why it is not one.
#[cfg(test)]
pub(crate) fn read_conflict_answer(payload: &[u8]) -> Result<Option<Member>, String> {
    match SerfMsg::decode(payload) {
        Ok(SerfMsg::ConflictResponse(m)) => Ok(m),
        Ok(other) => Err(format!("not a conflict response: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_known_member_is_answered_with_its_view() {
        let tags = Tags::from([("role".to_string(), "db".to_string())]);
        let p = answer_conflict_query("me", b"b", |n| {
            assert_eq!(n, "b");
            Some(serf_member(
                n,
                addr("127.0.0.1:7947"),
                &tags,
                MemberStatus::Suspect,
                Versions::SERF_0_9_4,
            ))
        })
        .expect("answered");
        assert_eq!(p[0], 6, "Serf's conflict response type");
        let m = read_conflict_answer(&p).unwrap().expect("a member");
        assert_eq!(m.name, "b");
        assert_eq!(m.addr.as_deref(), Some(&[127, 0, 0, 1][..]));
        assert_eq!(m.port, 7947);
        assert_eq!(m.tags, Some(vec![("role".into(), "db".into())]));
        assert_eq!(m.status, 1);
        assert_eq!(
            m.versions.to_vec(),
            Versions::SERF_0_9_4.to_bytes().to_vec()
        );
        let v6 = serf_member(
            "c",
            addr("[::1]:1"),
            &Tags::new(),
            MemberStatus::Left,
            Versions::SERF_0_9_4,
        );
        assert_eq!(v6.addr.map(|a| a.len()), Some(16));
        assert_eq!((v6.status, v6.tags), (3, Some(Vec::new())));
    }

    #[test]
    fn the_tally_reads_the_address_an_answer_holds() {
        let tags = Tags::new();
        let v4 = serf_member(
            "a",
            addr("10.0.0.7:7946"),
            &tags,
            MemberStatus::Alive,
            Versions::SERF_0_9_4,
        );
        let p = SerfMsg::ConflictResponse(Some(v4)).encode();
        assert_eq!(conflict_answer_addr(&p), Some(addr("10.0.0.7:7946")));
        let v6 = serf_member(
            "a",
            addr("[2001:db8::1]:7"),
            &tags,
            MemberStatus::Failed,
            Versions::SERF_0_9_4,
        );
        let p = SerfMsg::ConflictResponse(Some(v6)).encode();
        assert_eq!(conflict_answer_addr(&p), Some(addr("[2001:db8::1]:7")));
        // Go's 16-byte form of an IPv4 address is the IPv4 address.
        let mut mapped = serf_member(
            "a",
            addr("10.0.0.7:1"),
            &tags,
            MemberStatus::Alive,
            Versions::SERF_0_9_4,
        );
        mapped.addr = Some([&[0u8; 10][..], &[0xff, 0xff, 10, 0, 0, 7]].concat());
        let p = SerfMsg::ConflictResponse(Some(mapped)).encode();
        assert_eq!(conflict_answer_addr(&p), Some(addr("10.0.0.7:1")));
        // Nil, an address of the wrong length, or not a conflict response: no address.
        assert_eq!(conflict_answer_addr(&[6, 0xc0]), None);
        let mut odd = serf_member(
            "a",
            addr("10.0.0.7:1"),
            &tags,
            MemberStatus::Alive,
            Versions::SERF_0_9_4,
        );
        odd.addr = Some(vec![1, 2, 3]);
        let p = SerfMsg::ConflictResponse(Some(odd)).encode();
        assert_eq!(conflict_answer_addr(&p), None);
        assert_eq!(conflict_answer_addr(&[8, 0x80]), None);
        assert_eq!(conflict_answer_addr(&[]), None);
    }

    #[test]
    fn an_unknown_name_is_answered_nil_and_our_own_not_at_all() {
        let p = answer_conflict_query("me", b"ghost", |_| None).expect("answered");
        assert_eq!(&p[..], &[6, 0xc0]);
        assert_eq!(read_conflict_answer(&p), Ok(None));
        let bad = answer_conflict_query("me", &[0xff, 0xfe], |_| panic!("not looked up"));
        assert_eq!(bad.as_deref(), Some(&[6, 0xc0][..]));
        assert_eq!(
            answer_conflict_query("me", b"me", |_| panic!("not asked")),
            None
        );
        assert!(read_conflict_answer(&[8, 0x80]).is_err());
        assert!(read_conflict_answer(&[6]).is_err());
    }
}
