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
        url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
        url::Host::Domain(_) => None,
    };
    match literal.and_then(forbidden_reason) {
        Some(reason) => Err(format!("url must not point to a {reason} address")),
        None => Ok(()),
    }
}

/// Why an address may not be called, or `None` for a public address. IPv4 forms embedded in
/// IPv6 (mapped, compatible, NAT64, 6to4) are judged by the IPv4 address they carry.
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
    let segments = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        // Unique local addresses, including AWS's metadata service at fd00:ec2::254.
        Some("private")
    } else if segments[0] & 0xffc0 == 0xfe80 || segments[0] & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        Some("documentation")
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
    // IPv4-compatible (::a.b.c.d), deprecated but still routable by some stacks.
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(from(s[6], s[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(from(s[6], s[7]));
    }
    // 6to4 (2002::/16) embeds the IPv4 address in bits 16..48.
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
        assert_eq!(reason("64:ff9b::a00:1"), Some("private"));
        assert_eq!(reason("2002:7f00:1::"), Some("loopback"));
        assert_eq!(reason("::127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::ffff:8.8.8.8"), None);
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
}
