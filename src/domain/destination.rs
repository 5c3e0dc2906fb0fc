//! Which destinations Herald may call: `https` only and public addresses only, unless the
//! loudly named development switches say otherwise. The address rule is applied to every
//! resolved address on every attempt (delivery) and to literal hosts at create/update (api).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The two switches that relax destination safety; both off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    pub allow_http: bool,
    pub allow_private_targets: bool,
}

/// Checks what can be checked of a webhook URL without resolving it: absolute, `https` (or
/// `http` when allowed), a host, no credentials, and no literal forbidden address.
pub fn check_url_literal(url: &str, policy: &DestinationPolicy) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| "url must be an absolute URL".to_string())?;
    match parsed.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err("url must use https".into()),
        _ if policy.allow_http => return Err("url must use http or https".into()),
        _ => return Err("url must use https".into()),
    }
    let host = parsed.host().ok_or("url must have a host")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not contain credentials".into());
    }
    if policy.allow_private_targets {
        return Ok(());
    }
    let literal = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(name) if names_loopback(name) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        url::Host::Domain(_) => None,
    };
    match literal.and_then(forbidden_reason) {
        Some(reason) => Err(format!("url must not point to a {reason} address")),
        None => Ok(()),
    }
}

/// `localhost` and its subdomains always resolve to loopback (RFC 6761), with or without the
/// root's trailing dot; `url` has lowercased the name already.
fn names_loopback(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name == "localhost" || name.ends_with(".localhost")
}

/// Why an address may not be called, or `None` for a public address. IPv6 forms that carry an
/// IPv4 address the connection really goes to (mapped, compatible, 6to4) are judged by that
/// IPv4 address; translation and tunnelling prefixes whose far end Herald cannot judge
/// (NAT64, IPv4-translated, Teredo) are refused whole.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.169.254 and friends: the cloud metadata services live here.
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        // Shared address space; Alibaba Cloud's metadata service (100.100.100.200) too.
        Some("carrier-grade NAT")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast()
        || a >= 240
        || (a == 192 && b == 0 && c == 0)
        // The 6to4 relay anycast block: a relay forwards into IPv6 space Herald cannot judge.
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (b == 18 || b == 19))
    {
        Some("reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] & 0xfe00 == 0xfc00 {
        // Unique local addresses, including AWS's metadata service at fd00:ec2::254.
        Some("private")
    } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
        // Link-local, and the deprecated site-local block, still routed inside some sites.
        Some("link-local")
    } else if s[0] == 0x0064 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1) {
        // NAT64, the well-known prefix (64:ff9b::/96) and the local-use one (64:ff9b:1::/48):
        // the translator may reach the operator's own IPv4 network.
        Some("NAT64")
    } else if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        // IPv4-translated (::ffff:0:a.b.c.d), for stateless translators.
        Some("IPv4-translated")
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo tunnels carry their server and (obscured) client IPv4 addresses.
        Some("Teredo")
    } else if s[0] == 0x0100 && s[1..4] == [0; 3] {
        Some("discard")
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        // 2001:db8::/32 and 3fff::/20.
        Some("documentation")
    } else if s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0 {
        // Benchmarking, 2001:2::/48.
        Some("reserved")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address stands for, where it carries one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (::a.b.c.d), deprecated but still routable by some stacks; :: and ::1
    // are IPv6's own.
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(from(s[6], s[7]));
    }
    // 6to4 (2002::/16) embeds the IPv4 address of its relay in bits 16..48.
    if s[0] == 0x2002 {
        return Some(from(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        forbidden_reason(text.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ok in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:2800:220:1:248:1893:25c8:1946",
            "1.1.1.1",
        ] {
            assert_eq!(reason(ok), None, "{ok}");
        }
    }

    #[test]
    fn internal_ranges_are_refused() {
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
        ] {
            assert!(reason(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn ipv4_forms_inside_ipv6_are_judged_as_ipv4() {
        assert_eq!(reason("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::ffff:169.254.169.254"), Some("link-local"));
        assert_eq!(reason("::ffff:10.0.0.1"), Some("private"));
        assert_eq!(reason("::ffff:192.88.99.1"), Some("reserved"));
        assert_eq!(reason("2002:7f00:1::"), Some("loopback"));
        assert_eq!(reason("::127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::ffff:8.8.8.8"), None);
    }

    #[test]
    fn ipv6_translation_tunnel_and_reserved_prefixes_are_refused() {
        for (bad, why) in [
            ("64:ff9b::808:808", "NAT64"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("64:ff9b:1::a00:1", "NAT64"),
            ("64:ff9b:1:ffff::1", "NAT64"),
            ("::ffff:0:7f00:1", "IPv4-translated"),
            ("::ffff:0:808:808", "IPv4-translated"),
            ("2001::1", "Teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("100::1", "discard"),
            ("100::ffff:ffff:ffff:ffff", "discard"),
            ("2001:db8::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("2001:2::1", "reserved"),
            ("fec0::1", "link-local"),
            ("fe80::1", "link-local"),
            ("fd12:3456::1", "private"),
            ("ff05::2", "multicast"),
            ("2002:a00:1::1", "private"),
            ("2002:a9fe:a9fe::", "link-local"),
            ("::10.0.0.1", "private"),
            ("::0.0.0.2", "unspecified"),
        ] {
            assert_eq!(reason(bad), Some(why), "{bad}");
        }
        // Neighbours of those prefixes are ordinary global addresses.
        for ok in [
            "64:ff9b:2::1",
            "2001:4860::8888",
            "2002:808:808::1",
            "101::1",
        ] {
            assert_eq!(reason(ok), None, "{ok}");
        }
    }

    #[test]
    fn literal_urls_are_checked_at_the_edge() {
        let strict = DestinationPolicy::default();
        assert_eq!(check_url_literal("https://example.com/x", &strict), Ok(()));
        assert_eq!(
            check_url_literal("http://example.com/x", &strict).unwrap_err(),
            "url must use https"
        );
        assert_eq!(
            check_url_literal("example.com", &strict).unwrap_err(),
            "url must be an absolute URL"
        );
        assert_eq!(
            check_url_literal("https://127.0.0.1/x", &strict).unwrap_err(),
            "url must not point to a loopback address"
        );
        assert!(check_url_literal("https://[::ffff:10.0.0.1]/", &strict).is_err());
        assert!(check_url_literal("https://localhost:8443/", &strict).is_err());
        assert!(check_url_literal("https://LOCALHOST./", &strict).is_err());
        assert!(check_url_literal("https://api.localhost/", &strict).is_err());
        assert_eq!(
            check_url_literal("https://localhost.example.com/", &strict),
            Ok(())
        );
        assert!(check_url_literal("https://u:p@example.com/", &strict).is_err());
        let dev = DestinationPolicy {
            allow_http: true,
            allow_private_targets: true,
        };
        assert_eq!(
            check_url_literal("http://127.0.0.1:9000/hook", &dev),
            Ok(())
        );
        assert!(check_url_literal("ftp://example.com/", &dev).is_err());
    }

    mod properties {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

        use proptest::prelude::*;

        use super::super::forbidden_reason;

        /// The IPv4 blocks Herald must never call, written out apart from the code under test.
        const FORBIDDEN_V4: &[([u8; 4], u32)] = &[
            ([0, 0, 0, 0], 8),
            ([10, 0, 0, 0], 8),
            ([100, 64, 0, 0], 10),
            ([127, 0, 0, 0], 8),
            ([169, 254, 0, 0], 16),
            ([172, 16, 0, 0], 12),
            ([192, 0, 0, 0], 24),
            ([192, 0, 2, 0], 24),
            ([192, 88, 99, 0], 24),
            ([192, 168, 0, 0], 16),
            ([198, 18, 0, 0], 15),
            ([198, 51, 100, 0], 24),
            ([203, 0, 113, 0], 24),
            ([224, 0, 0, 0], 4),
            ([240, 0, 0, 0], 4),
        ];

        fn in_block(ip: u32, (network, prefix): ([u8; 4], u32)) -> bool {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            ip & mask == u32::from_be_bytes(network) & mask
        }

        /// Any address of one of the forbidden blocks.
        fn forbidden_v4() -> impl Strategy<Value = Ipv4Addr> {
            (0..FORBIDDEN_V4.len(), any::<u32>()).prop_map(|(block, host)| {
                let (network, prefix) = FORBIDDEN_V4[block];
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                Ipv4Addr::from(u32::from_be_bytes(network) & mask | host & !mask)
            })
        }

        fn public_v4() -> impl Strategy<Value = Ipv4Addr> {
            any::<u32>()
                .prop_filter("outside every forbidden block", |ip| {
                    FORBIDDEN_V4.iter().all(|block| !in_block(*ip, *block))
                })
                .prop_map(Ipv4Addr::from)
        }

        /// The IPv6 forms that carry `v4`, with random bits where the form leaves them free.
        fn v6_forms(v4: Ipv4Addr, free: u128) -> Vec<Ipv6Addr> {
            let bits = u128::from(u32::from(v4));
            vec![
                v4.to_ipv6_mapped(),
                Ipv6Addr::from(bits),
                Ipv6Addr::from(0x2002u128 << 112 | bits << 80 | free & ((1 << 80) - 1)),
                Ipv6Addr::from(0x0064_ff9b_u128 << 96 | bits),
                Ipv6Addr::from(0x0064_ff9b_0001_u128 << 80 | free & ((1 << 80) - 1)),
                Ipv6Addr::from(0xffff_u128 << 48 | bits),
                Ipv6Addr::from(0x2001_0000_u128 << 96 | free & ((1 << 96) - 1)),
            ]
        }

        proptest! {
            #[test]
            fn every_address_of_a_forbidden_ipv4_block_is_refused_in_every_form(
                v4 in forbidden_v4(),
                free in any::<u128>(),
            ) {
                prop_assert!(forbidden_reason(IpAddr::V4(v4)).is_some(), "{}", v4);
                for v6 in v6_forms(v4, free) {
                    prop_assert!(forbidden_reason(IpAddr::V6(v6)).is_some(), "{} ({})", v6, v4);
                }
            }

            #[test]
            fn public_ipv4_addresses_pass_alone_mapped_and_through_6to4(
                v4 in public_v4(),
                free in any::<u128>(),
            ) {
                prop_assert_eq!(forbidden_reason(IpAddr::V4(v4)), None, "{}", v4);
                let mapped = IpAddr::V6(v4.to_ipv6_mapped());
                prop_assert_eq!(forbidden_reason(mapped), None, "{}", mapped);
                let six_to_four = Ipv6Addr::from(
                    0x2002u128 << 112 | u128::from(u32::from(v4)) << 80 | free & ((1 << 80) - 1),
                );
                prop_assert_eq!(forbidden_reason(IpAddr::V6(six_to_four)), None, "{}", six_to_four);
            }

            #[test]
            fn global_unicast_ipv6_outside_the_special_blocks_passes(bits in any::<u128>()) {
                // 2000::/3, less 2001::/16, 2002::/16 (judged by its IPv4) and 3fff::/16.
                let ip = Ipv6Addr::from(0x2u128 << 124 | bits & ((1 << 125) - 1));
                let first = ip.segments()[0];
                prop_assume!(first != 0x2001 && first != 0x2002 && first != 0x3fff);
                prop_assert_eq!(forbidden_reason(IpAddr::V6(ip)), None, "{}", ip);
            }

            #[test]
            fn classification_never_panics(bits in any::<u128>(), v4 in any::<u32>()) {
                let _ = forbidden_reason(IpAddr::V6(Ipv6Addr::from(bits)));
                let _ = forbidden_reason(IpAddr::V4(Ipv4Addr::from(v4)));
            }
        }
    }
}
