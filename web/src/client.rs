//! Who the client is behind reverse proxies. The TCP peer is the client unless it is one of the
//! operator's trusted proxies (`--trusted-proxies`); then the client is read from the proxies'
//! `X-Forwarded-For` (or, without one, RFC 7239 `Forwarded: for=`), walking the hops from the
//! right — the one the nearest proxy appended — past every trusted proxy to the first address
//! that is not one. Everything left of it was written by the client and is never believed.
//!
//! `X-Forwarded-For` wins where both headers came: nginx, HAProxy, cloud load balancers and
//! CDNs append to it, so a `Forwarded` header a client forged passes them untouched and must not
//! be read; behind a proxy that writes only `Forwarded`, have it drop `X-Forwarded-For`. A hop
//! that is not an address (`unknown`, an obfuscated `_name`, garbage) ends the walk at the peer:
//! whoever hid there is counted as the proxy, never as an address of their choosing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;
use axum::http::header::FORWARDED;

/// A network of trusted proxies: an address and how many of its leading bits are the network's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNetwork {
    addr: IpAddr,
    prefix: u8,
}

/// Why a trusted proxy was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "trusted proxy {given:?}: {reason} (an address like 10.0.0.1 or ::1, or a network like 10.0.0.0/8 or fd00::/8)"
)]
pub struct InvalidProxy {
    pub given: String,
    pub reason: &'static str,
}

impl FromStr for ProxyNetwork {
    type Err = InvalidProxy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidProxy {
            given: s.to_owned(),
            reason,
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| invalid("not an IP address"))?,
        );
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| invalid("the prefix length is out of range"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for ProxyNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl ProxyNetwork {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The operator's reverse proxies; none by default, when the TCP peer is always the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ProxyNetwork>);

impl TrustedProxies {
    /// Parses each of `networks` (addresses or CIDR networks).
    pub fn parse<S: AsRef<str>>(networks: &[S]) -> Result<Self, InvalidProxy> {
        networks
            .iter()
            .map(|n| n.as_ref().parse())
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy, then the first
    /// untrusted hop from the right of the forwarding headers it passed on.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop else {
                return peer;
            };
            client = *ip;
            if !self.trusts(*ip) {
                return client;
            }
        }
        // Every hop was a trusted proxy: the leftmost is as far as anyone vouches for.
        client
    }
}

/// The hops the forwarding headers name, left to right, `None` where one is not an address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Option<Vec<_>>>()
    };
    let xff = values(axum::http::HeaderName::from_static("x-forwarded-for"));
    match xff {
        // A header that is not text is malformed: nothing in it is believed.
        None => vec![None],
        Some(v) if !v.is_empty() => v
            .iter()
            .flat_map(|line| line.split(','))
            .map(|hop| node(hop.trim()))
            .collect(),
        Some(_) => {
            // A line with an unclosed quote or an escape is malformed as a whole: a client's
            // `for=9.9.9.9;x="` would otherwise swallow what the proxy appended after it.
            let elements = values(FORWARDED).and_then(|v| {
                v.iter()
                    .map(|line| split_unquoted(line, ','))
                    .collect::<Option<Vec<_>>>()
            });
            match elements {
                None => vec![None],
                Some(lines) => lines
                    .iter()
                    .flatten()
                    .map(|element| forwarded_for(element))
                    .collect(),
            }
        }
    }
}

/// The `for=` of one element of a `Forwarded` header (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_unquoted(element, ';')? {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            found = Some(value.trim().to_owned());
        }
    }
    let value = found?;
    let value = match value.strip_prefix('"') {
        Some(v) => v.strip_suffix('"')?,
        None => &value,
    };
    node(value)
}

/// Splits at `sep` outside double quotes; `None` if a quote is left open or a backslash escape
/// appears (no address needs one, and a forged element would hide behind them).
fn split_unquoted(s: &str, sep: char) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '\\' {
            return None;
        }
        if c == sep && !quoted {
            parts.push(part.trim().to_owned());
            part.clear();
        } else {
            quoted ^= c == '"';
            part.push(c);
        }
    }
    if quoted {
        return None;
    }
    parts.push(part.trim().to_owned());
    Some(parts)
}

/// One hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:443`;
/// `None` for anything else (`unknown`, `_hidden`, garbage).
fn node(hop: &str) -> Option<IpAddr> {
    if let Some(rest) = hop.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || port(after.strip_prefix(':')?)) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(|ip| canonical(ip.into()));
    }
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let (v4, p) = hop.split_once(':')?;
    if !port(p) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port as RFC 7239 allows it: digits, or an obfuscated `_name`.
fn port(p: &str) -> bool {
    p.parse::<u16>().is_ok()
        || (p.starts_with('_')
            && p.len() > 1
            && p[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'))
}

/// IPv4 written as IPv6 (`::ffff:1.2.3.4`, what a dual-stack listener sees) is IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: ProxyNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.0.1")) && !n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        let n: ProxyNetwork = "fd00::/8".parse().unwrap();
        assert!(n.contains(ip("fd12::1")) && !n.contains(ip("fe80::1")));
        let one: ProxyNetwork = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: ProxyNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "localhost", "10.0.0.0/x", ""] {
            assert!(bad.parse::<ProxyNetwork>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let p = proxies(&["10.0.0.0/8"]);
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(p.client(ip("203.0.113.9"), &spoof), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("127.0.0.1"), &spoof),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_past_trusted_hops() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        // The client forged the leftmost entry; the proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 192.168.1.1")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7:4711, 10.1.1.1"),
        ]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // IPv6, bare and bracketed with a port.
        let h = headers(&[("x-forwarded-for", "2001:db8::1")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("2001:db8::1"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::2]:443")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("2001:db8::2"));
        // Only trusted hops: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.8.8.8")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(p.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_is_read_per_rfc_7239() {
        let p = proxies(&["10.0.0.0/8", "::1"]);
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.3.3.3;by=10.0.0.1",
        )]);
        assert_eq!(p.client(ip("::1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[
            ("forwarded", "for=192.0.2.60;proto=http"),
            ("forwarded", "For=\"198.51.100.17:_port\""),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("198.51.100.17"));
        // X-Forwarded-For wins where both came (a forged Forwarded passes nginx untouched).
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.5"),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("198.51.100.5"));
    }

    #[test]
    fn an_open_quote_cannot_swallow_what_the_proxy_appended() {
        // The client sends `for=9.9.9.9;x="`; the proxy appends its peer to the same line.
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("forwarded", "for=9.9.9.9;x=\", for=203.0.113.5")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "for=9.9.9.9;x=\"a\\\"\", for=203.0.113.5")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn hidden_or_malformed_hops_fall_back_to_the_peer() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        for (name, value) in [
            ("forwarded", "for=_hidden"),
            ("forwarded", "for=unknown"),
            ("forwarded", "for=\"[2001:db8::1\""),
            ("forwarded", "proto=https"),
            ("forwarded", "for=1.2.3.4;for=5.6.7.8"),
            ("forwarded", "for=\"1.2.3.4"),
            ("x-forwarded-for", "not-an-address"),
            ("x-forwarded-for", "1.2.3.4:99999"),
            ("x-forwarded-for", "1.2.3.4, "),
            ("x-forwarded-for", "[::1]x"),
            ("x-forwarded-for", ""),
        ] {
            let h = headers(&[(name, value)]);
            assert_eq!(p.client(peer, &h), peer, "{name}: {value}");
        }
        // An address left of an unreadable hop is never reached.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, _hidden, 10.1.1.1")]);
        assert_eq!(p.client(peer, &h), peer);
        // Bytes that are not text.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap(),
        );
        assert_eq!(p.client(peer, &h), peer);
    }
}
