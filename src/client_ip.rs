//! Who the client is, behind a reverse proxy: the address the record, the access log, the
//! lockout and the allow-list use.
//!
//! A connection's peer is the client, unless the peer is in `TRUSTED_PROXIES`: then the peer
//! is a reverse proxy (nginx, Caddy) and the client is what it says in `X-Real-IP` or, when
//! that names another trusted proxy or is missing, the rightmost `X-Forwarded-For` address
//! that is not a trusted proxy (each proxy appends the address it saw; everything left of the
//! last untrusted hop was written by someone we do not trust). Headers from any other peer are
//! ignored, so a client cannot choose its own address. With `TRUSTED_PROXIES` empty (the
//! default) no header is read at all.
//!
//! `ALLOWED_IPS` is an [`IpRanges`] too: when set, the proxy port refuses every other client.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

const X_REAL_IP: &str = "x-real-ip";
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// A list of address ranges (`TRUSTED_PROXIES`, `ALLOWED_IPS`). Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRanges(Arc<[IpNet]>);

impl IpRanges {
    /// Parses a comma-separated list of CIDR ranges or bare addresses (a bare address is
    /// itself only: /32 or /128). The error names the entry that is neither.
    pub fn parse(list: &str) -> Result<IpRanges, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                IpNet::from_str(entry)
                    .map(|net| net.trunc())
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "expected comma-separated addresses or CIDR ranges (10.0.0.0/8, ::1), got {entry:?}"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|nets| IpRanges(nets.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is in one of the ranges (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// As an allow-list (`ALLOWED_IPS`): whether `ip` may come in; an empty list lets
    /// everyone in.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.is_empty() || self.contains(ip)
    }

    /// The ranges, as configured (for messages and the checklist).
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

/// The client's address: `peer` itself unless `peer` is a trusted proxy, then the address its
/// headers name (see the module's header). Never fails: headers that name no usable address
/// leave the peer.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &IpRanges) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let real_ip = one_header(headers, X_REAL_IP).and_then(parse_address);
    if let Some(ip) = real_ip
        && !trusted.contains(ip)
    {
        return ip;
    }
    forwarded_for(headers, trusted)
        .or(real_ip)
        .unwrap_or(peer)
        .to_canonical()
}

/// The rightmost `X-Forwarded-For` address (over all its header lines, in order) that is not a
/// trusted proxy. When every address up to the left end, or up to a value that is not an
/// address, is a trusted proxy, the last of them walked past (the hop furthest from us that
/// can be believed).
fn forwarded_for(headers: &HeaderMap, trusted: &IpRanges) -> Option<IpAddr> {
    let lines: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<_>>()?;
    let mut believed = None;
    for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        let Some(ip) = parse_address(entry) else {
            break;
        };
        if !trusted.contains(ip) {
            return Some(ip.to_canonical());
        }
        believed = Some(ip);
    }
    believed
}

/// The value of `name` when the request has exactly one such header.
fn one_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]`, or with a
/// port (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_address(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    IpAddr::from_str(value)
        .ok()
        .or_else(|| SocketAddr::from_str(value).ok().map(|a| a.ip()))
        .or_else(|| {
            value
                .strip_prefix('[')?
                .strip_suffix(']')
                .and_then(|v| IpAddr::from_str(v).ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &str) -> IpRanges {
        IpRanges::parse(list).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_str(name).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    const PROXY: &str = "10.0.0.2";

    /// The client `PROXY` (trusted, with `trusted`) forwards with `pairs`.
    fn through(trusted: &str, pairs: &[(&str, &str)]) -> String {
        resolve(ip(PROXY), &headers(pairs), &ranges(trusted)).to_string()
    }

    #[test]
    fn ranges_parse_cidrs_and_bare_addresses() {
        let r = ranges(" 10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,::1,, 172.16.5.4/12");
        assert!(r.contains(ip("10.255.0.1")));
        assert!(r.contains(ip("192.168.1.7")));
        assert!(!r.contains(ip("192.168.1.8")), "a bare address is /32");
        assert!(r.contains(ip("2001:db8:ffff::1")));
        assert!(r.contains(ip("::1")));
        assert!(!r.contains(ip("::2")), "a bare address is /128");
        assert!(r.contains(ip("172.31.0.1")), "host bits are dropped");
        assert!(r.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped as IPv4");
        assert!(ranges("").is_empty());
        assert!(
            ranges("").admits(ip("192.0.2.1")),
            "an empty allow-list admits everyone"
        );
        assert!(!r.admits(ip("192.0.2.1")));
        for bad in ["10.0.0.0/33", "localhost", "10.0.0", "1.2.3.4:80", "*"] {
            let e = IpRanges::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn headers_of_an_untrusted_peer_are_ignored() {
        let spoofed = headers(&[("x-real-ip", "203.0.113.9"), ("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            resolve(ip(PROXY), &spoofed, &IpRanges::default()),
            ip(PROXY)
        );
        assert_eq!(
            resolve(ip("10.0.0.3"), &spoofed, &ranges("10.0.0.2")),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn x_real_ip_from_a_trusted_proxy_is_the_client() {
        assert_eq!(
            through(PROXY, &[("x-real-ip", " 203.0.113.9 ")]),
            "203.0.113.9"
        );
        assert_eq!(
            through(PROXY, &[("x-real-ip", "2001:db8::7")]),
            "2001:db8::7"
        );
        assert_eq!(
            through(PROXY, &[("x-real-ip", "[2001:db8::7]:443")]),
            "2001:db8::7"
        );
        // It wins over X-Forwarded-For, which nginx passes on as the client sent it unless told.
        assert_eq!(
            through(
                PROXY,
                &[("x-real-ip", "203.0.113.9"), ("x-forwarded-for", "6.6.6.6")]
            ),
            "203.0.113.9"
        );
        // Garbage, or two of them, name nobody: the peer.
        assert_eq!(through(PROXY, &[("x-real-ip", "unknown")]), PROXY);
        assert_eq!(
            through(PROXY, &[("x-real-ip", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]),
            PROXY
        );
        assert_eq!(through(PROXY, &[]), PROXY);
    }

    #[test]
    fn x_forwarded_for_gives_the_rightmost_untrusted_hop() {
        let trusted = "10.0.0.0/8, 2001:db8:1::/48";
        // client, then two trusted proxies.
        assert_eq!(
            through(
                trusted,
                &[("x-forwarded-for", "198.51.100.1, 10.0.0.9, 10.0.0.5")]
            ),
            "198.51.100.1"
        );
        // A client that writes its own header gets its real address appended after it.
        assert_eq!(
            through(
                trusted,
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.1,10.0.0.5")]
            ),
            "198.51.100.1"
        );
        // Several header lines are one list, in order.
        assert_eq!(
            through(
                trusted,
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "198.51.100.1, 10.1.1.1")
                ]
            ),
            "198.51.100.1"
        );
        // IPv6, bracketed, with ports, whitespace.
        assert_eq!(
            through(
                trusted,
                &[("x-forwarded-for", "2001:db8:2::5 ,\t2001:db8:1::1")]
            ),
            "2001:db8:2::5"
        );
        assert_eq!(
            through(
                trusted,
                &[("x-forwarded-for", "[2001:db8:2::5]:4711, 10.0.0.1:80")]
            ),
            "2001:db8:2::5"
        );
        assert_eq!(
            through(trusted, &[("x-forwarded-for", "::ffff:198.51.100.4")]),
            "198.51.100.4"
        );
        // X-Real-IP naming a trusted proxy (nginx behind a load balancer): X-Forwarded-For says more.
        assert_eq!(
            through(
                trusted,
                &[
                    ("x-real-ip", "10.0.0.9"),
                    ("x-forwarded-for", "198.51.100.1, 10.0.0.9")
                ]
            ),
            "198.51.100.1"
        );
    }

    #[test]
    fn x_forwarded_for_stops_at_garbage_and_at_its_left_end() {
        let trusted = "10.0.0.0/8";
        // Everything trusted: the leftmost hop.
        assert_eq!(
            through(trusted, &[("x-forwarded-for", "10.0.0.7, 10.0.0.5")]),
            "10.0.0.7"
        );
        // Garbage right of the client: nothing left of it is believed.
        assert_eq!(
            through(
                trusted,
                &[("x-forwarded-for", "198.51.100.1, unknown, 10.0.0.5")]
            ),
            "10.0.0.5"
        );
        assert_eq!(through(trusted, &[("x-forwarded-for", "unknown")]), PROXY);
        assert_eq!(through(trusted, &[("x-forwarded-for", "")]), PROXY);
        assert_eq!(through(trusted, &[("x-forwarded-for", " , ,")]), PROXY);
        assert_eq!(
            through(trusted, &[("x-forwarded-for", "198.51.100.1,,10.0.0.5")]),
            "10.0.0.5"
        );
        // A trusted X-Real-IP is still better than nothing.
        assert_eq!(
            through(
                trusted,
                &[("x-real-ip", "10.0.0.9"), ("x-forwarded-for", "nope")]
            ),
            "10.0.0.9"
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_is_trusted_as_its_ipv4_address() {
        let h = headers(&[("x-real-ip", "203.0.113.9")]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &h, &ranges("127.0.0.1")),
            ip("203.0.113.9")
        );
    }
}
