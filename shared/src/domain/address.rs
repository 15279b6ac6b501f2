//! Which IP addresses a status callback may connect to where Holub serves others: only ones
//! on the public internet. A callback is a request Holub makes on a customer's behalf, so
//! an address inside the deployment's own network (a cloud metadata endpoint, a database,
//! the loopback) must never be one it reaches.
//!
//! An IPv6 address that carries an IPv4 address (mapped, compatible, 6to4) is judged by the
//! IPv4 address it carries, since that is where the packets end up; translation and
//! tunnelling prefixes whose far end cannot be judged (NAT64, Teredo) are refused whole.
//! Sources: the IANA special-purpose address registries (RFC 6890 and its updates).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unspecified,
    Loopback,
    /// RFC 1918, and the unique-local fc00::/7.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedNat,
    LinkLocal,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Reserved, protocol-assignment or otherwise special ranges (0/8, 192.0.0/24, 240/4,
    /// 100::/64, 2001:10::/28, site-local fec0::/10, …).
    Reserved,
    /// 64:ff9b::/96 and 64:ff9b:1::/48: the translator, not the customer, would be reached.
    Nat64,
    /// 2001::/32: the far end of a Teredo tunnel cannot be judged.
    Teredo,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unspecified => "unspecified",
            Refusal::Loopback => "loopback",
            Refusal::Private => "private",
            Refusal::SharedNat => "shared_nat",
            Refusal::LinkLocal => "link_local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Documentation => "documentation",
            Refusal::Benchmarking => "benchmarking",
            Refusal::Reserved => "reserved",
            Refusal::Nat64 => "nat64",
            Refusal::Teredo => "teredo",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `None` for an address on the public internet, else why not.
pub fn refusal(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

pub fn is_public(ip: IpAddr) -> bool {
    refusal(ip).is_none()
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn refusal_v4(ip: Ipv4Addr) -> Option<Refusal> {
    const TABLE: &[([u8; 4], u32, Refusal)] = &[
        ([0, 0, 0, 0], 32, Refusal::Unspecified),
        ([0, 0, 0, 0], 8, Refusal::Reserved),
        ([10, 0, 0, 0], 8, Refusal::Private),
        ([100, 64, 0, 0], 10, Refusal::SharedNat),
        ([127, 0, 0, 0], 8, Refusal::Loopback),
        ([169, 254, 0, 0], 16, Refusal::LinkLocal),
        ([172, 16, 0, 0], 12, Refusal::Private),
        ([192, 0, 0, 0], 24, Refusal::Reserved),
        ([192, 0, 2, 0], 24, Refusal::Documentation),
        ([192, 88, 99, 0], 24, Refusal::Reserved),
        ([192, 168, 0, 0], 16, Refusal::Private),
        ([198, 18, 0, 0], 15, Refusal::Benchmarking),
        ([198, 51, 100, 0], 24, Refusal::Documentation),
        ([203, 0, 113, 0], 24, Refusal::Documentation),
        ([224, 0, 0, 0], 4, Refusal::Multicast),
        ([255, 255, 255, 255], 32, Refusal::Broadcast),
        ([240, 0, 0, 0], 4, Refusal::Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, why)| *why)
}

fn refusal_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip.is_unspecified() {
        return Some(Refusal::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Refusal::Loopback);
    }
    let seg = ip.segments();
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated but still routed by
    // some stacks to the IPv4 address).
    if seg[..5] == [0; 5] && (seg[5] == 0xffff || seg[5] == 0) {
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        return refusal_v4(Ipv4Addr::new(a, b, c, d)).or(
            // A compatible address is never a public destination of its own.
            (seg[5] == 0).then_some(Refusal::Reserved),
        );
    }
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if seg[0] == 0x2002 {
        let [a, b] = seg[1].to_be_bytes();
        let [c, d] = seg[2].to_be_bytes();
        return refusal_v4(Ipv4Addr::new(a, b, c, d));
    }
    const TABLE: &[([u16; 8], u32, Refusal)] = &[
        ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, Refusal::Nat64),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Refusal::Nat64),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Refusal::Reserved),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Refusal::Teredo),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, Refusal::Benchmarking),
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, Refusal::Reserved),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, Refusal::Reserved),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            Refusal::Documentation,
        ),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Refusal::Documentation),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Refusal::Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, Refusal::LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Refusal::Reserved),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Refusal::Multicast),
    ];
    if let Some((_, _, why)) = TABLE.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return Some(*why);
    }
    // Outside 2000::/3 nothing is allocated for unicast on the internet.
    (seg[0] & 0xe000 != 0x2000).then_some(Refusal::Reserved)
}

/// Why a callback URL may not be called where only public addresses are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("callback_url must use https")]
    NotHttps,
    #[error("callback_url names a local host")]
    LocalName,
    #[error("callback_url's host is a {0} address, not a public one")]
    Address(Refusal),
    #[error("callback_url's host resolves to a {0} address, not a public one")]
    Resolves(Refusal),
    #[error("callback_url's host resolves to no address")]
    NoAddress,
}

/// What can be judged of a callback URL before any lookup, where only public addresses are
/// allowed: https, and a host that is a public address or a name not reserved for local use.
/// Gives the name left to resolve, if the host is one.
pub fn public_target(url: &url::Url) -> Result<Option<&str>, TargetError> {
    if url.scheme() != "https" {
        return Err(TargetError::NotHttps);
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(name)) => {
            let lower = name.trim_end_matches('.').to_ascii_lowercase();
            // Names under RFC 6761's localhost, and the names clouds give their own
            // services (metadata.google.internal), which a resolver may answer or not: refused
            // by name. (`localhost` itself resolves, and is judged by its addresses.)
            return if lower.ends_with(".localhost") || lower.ends_with(".internal") {
                Err(TargetError::LocalName)
            } else {
                Ok(url.host_str())
            };
        }
        None => return Err(TargetError::NoAddress),
    };
    match refusal(ip) {
        Some(why) => Err(TargetError::Address(why)),
        None => Ok(None),
    }
}

/// A name may be connected to only if every address it resolves to is public: which one a
/// client picks is not ours to choose, and one private answer among public ones is an
/// attack, not an accident.
pub fn check_resolved(addrs: &[IpAddr]) -> Result<(), TargetError> {
    if addrs.is_empty() {
        return Err(TargetError::NoAddress);
    }
    match addrs.iter().find_map(|ip| refusal(*ip)) {
        Some(why) => Err(TargetError::Resolves(why)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_table_of_cases() {
        let cases: &[(&str, Option<Refusal>)] = &[
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("172.32.0.1", None),
            ("198.20.0.1", None),
            ("223.255.255.255", None),
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("0.1.2.3", Some(Refusal::Reserved)),
            ("127.0.0.1", Some(Refusal::Loopback)),
            ("127.255.255.254", Some(Refusal::Loopback)),
            ("10.0.0.1", Some(Refusal::Private)),
            ("172.16.0.1", Some(Refusal::Private)),
            ("172.31.255.255", Some(Refusal::Private)),
            ("192.168.1.1", Some(Refusal::Private)),
            ("100.64.0.1", Some(Refusal::SharedNat)),
            ("100.127.255.255", Some(Refusal::SharedNat)),
            ("169.254.169.254", Some(Refusal::LinkLocal)),
            ("192.0.0.170", Some(Refusal::Reserved)),
            ("192.0.2.1", Some(Refusal::Documentation)),
            ("198.51.100.7", Some(Refusal::Documentation)),
            ("203.0.113.9", Some(Refusal::Documentation)),
            ("192.88.99.1", Some(Refusal::Reserved)),
            ("198.18.0.1", Some(Refusal::Benchmarking)),
            ("198.19.255.255", Some(Refusal::Benchmarking)),
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("239.255.255.250", Some(Refusal::Multicast)),
            ("240.0.0.1", Some(Refusal::Reserved)),
            ("255.255.255.255", Some(Refusal::Broadcast)),
            // IPv6
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
            ("2002:0808:0808::1", None),
            ("::ffff:8.8.8.8", None),
            ("::", Some(Refusal::Unspecified)),
            ("::1", Some(Refusal::Loopback)),
            ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
            ("::ffff:169.254.169.254", Some(Refusal::LinkLocal)),
            ("::ffff:10.0.0.1", Some(Refusal::Private)),
            ("::ffff:0.0.0.0", Some(Refusal::Unspecified)),
            ("::127.0.0.1", Some(Refusal::Loopback)),
            ("::8.8.8.8", Some(Refusal::Reserved)),
            ("64:ff9b::8.8.8.8", Some(Refusal::Nat64)),
            ("64:ff9b::a9fe:a9fe", Some(Refusal::Nat64)),
            ("64:ff9b:1::1", Some(Refusal::Nat64)),
            ("2002:7f00:0001::1", Some(Refusal::Loopback)),
            ("2002:a9fe:a9fe::", Some(Refusal::LinkLocal)),
            ("2002:c0a8:0101::1", Some(Refusal::Private)),
            ("2001::1", Some(Refusal::Teredo)),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some(Refusal::Teredo),
            ),
            ("2001:db8::1", Some(Refusal::Documentation)),
            ("3fff::1", Some(Refusal::Documentation)),
            ("2001:2::1", Some(Refusal::Benchmarking)),
            ("2001:10::1", Some(Refusal::Reserved)),
            ("100::1", Some(Refusal::Reserved)),
            ("fc00::1", Some(Refusal::Private)),
            ("fd12:3456::1", Some(Refusal::Private)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("febf::1", Some(Refusal::LinkLocal)),
            ("fec0::1", Some(Refusal::Reserved)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("::2", Some(Refusal::Reserved)),
            ("4000::1", Some(Refusal::Reserved)),
        ];
        for (text, expected) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(refusal(ip), *expected, "{text}");
            assert_eq!(is_public(ip), expected.is_none(), "{text}");
        }
    }

    /// The IPv4 addresses no callback may reach, drawn from each refused range.
    fn forbidden_v4() -> impl Strategy<Value = Ipv4Addr> {
        let in_net = |net: [u8; 4], len: u32| {
            any::<u32>().prop_map(move |r| {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Ipv4Addr::from((u32::from(Ipv4Addr::from(net)) & mask) | (r & !mask))
            })
        };
        prop_oneof![
            in_net([0, 0, 0, 0], 8),
            in_net([10, 0, 0, 0], 8),
            in_net([100, 64, 0, 0], 10),
            in_net([127, 0, 0, 0], 8),
            in_net([169, 254, 0, 0], 16),
            in_net([172, 16, 0, 0], 12),
            in_net([192, 168, 0, 0], 16),
            in_net([198, 18, 0, 0], 15),
            in_net([224, 0, 0, 0], 3),
        ]
    }

    /// Every way IPv6 can carry an IPv4 address.
    fn embeddings(v4: Ipv4Addr) -> Vec<Ipv6Addr> {
        let [a, b, c, d] = v4.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        vec![
            v4.to_ipv6_mapped(),
            v4.to_ipv6_compatible(),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
            // Teredo keeps the client's address inverted in the last 32 bits.
            Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0x8000, 0, !hi, !lo),
        ]
    }

    proptest! {
        #[test]
        fn every_embedding_of_a_forbidden_v4_is_refused(v4 in forbidden_v4()) {
            prop_assert!(!is_public(IpAddr::V4(v4)));
            for v6 in embeddings(v4) {
                prop_assert!(!is_public(IpAddr::V6(v6)), "{v6} carries {v4}");
            }
        }

        #[test]
        fn a_mapped_address_is_judged_as_its_v4(v4 in any::<u32>().prop_map(Ipv4Addr::from)) {
            prop_assert_eq!(
                refusal(IpAddr::V6(v4.to_ipv6_mapped())),
                refusal(IpAddr::V4(v4))
            );
        }
    }

    #[test]
    fn urls_are_judged_before_and_after_lookup() {
        let target = |u: &str| {
            let url = url::Url::parse(u).unwrap();
            public_target(&url).map(|n| n.map(str::to_owned))
        };
        assert_eq!(
            target("https://hooks.example.com/x"),
            Ok(Some("hooks.example.com".into()))
        );
        assert_eq!(target("https://8.8.8.8/x"), Ok(None));
        assert_eq!(
            target("http://hooks.example.com/x"),
            Err(TargetError::NotHttps)
        );
        assert_eq!(target("https://localhost:9/"), Ok(Some("localhost".into())));
        assert_eq!(target("https://a.LOCALHOST./"), Err(TargetError::LocalName));
        assert_eq!(
            target("https://metadata.google.internal/"),
            Err(TargetError::LocalName)
        );
        assert_eq!(
            target("https://169.254.169.254/latest"),
            Err(TargetError::Address(Refusal::LinkLocal))
        );
        assert_eq!(
            target("https://[::ffff:a9fe:a9fe]/"),
            Err(TargetError::Address(Refusal::LinkLocal))
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(check_resolved(&[ip("8.8.8.8"), ip("2606:4700::1")]), Ok(()));
        assert_eq!(
            check_resolved(&[ip("8.8.8.8"), ip("127.0.0.1")]),
            Err(TargetError::Resolves(Refusal::Loopback))
        );
        assert_eq!(check_resolved(&[]), Err(TargetError::NoAddress));
    }
}
