//! Where a call goes: the Request-URI of a target (`sip:` URI or E.164 number via the proxy)
//! and the address of the first hop.
//!
//! Invariant: a target is either turned into a valid `sip:` Request-URI with a resolvable
//! first hop, or refused as bad configuration before anything is sent.

use super::message;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Bound on DNS / address resolution of a target or proxy.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the first INVITE goes and what its Request-URI is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub request_uri: String,
    /// `host[:port]` to resolve for the first hop (the proxy when there is one).
    pub first_hop: (String, u16),
}

/// `sip:` URIs are used as is; an E.164 number `+33…` becomes `sip:+33…@proxy;user=phone`
/// and needs a proxy. Anything else is bad configuration.
pub fn target_of(target: &str, proxy: Option<&str>) -> Result<Target, String> {
    let target = target.trim();
    let proxy_hop = proxy.map(|p| host_port(p).ok_or_else(|| format!("bad proxy URI {p:?}")));
    let proxy_hop = proxy_hop.transpose()?;
    if target.starts_with("sip:") {
        let hop = host_port(target).ok_or_else(|| format!("bad target URI {target:?}"))?;
        rsip::Uri::try_from(target).map_err(|_| format!("bad target URI {target:?}"))?;
        return Ok(Target {
            request_uri: target.to_string(),
            first_hop: proxy_hop.unwrap_or(hop),
        });
    }
    let digits = target.strip_prefix('+').unwrap_or("");
    if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "target {target:?} is neither a sip: URI nor an E.164 number"
        ));
    }
    let Some((host, port)) = proxy_hop else {
        return Err("an E.164 target needs [sip] proxy".into());
    };
    let hostport = if port == 5060 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    Ok(Target {
        request_uri: format!("sip:{target}@{hostport};user=phone"),
        first_hop: (host, port),
    })
}

/// The host and port of a SIP URI or name-addr (default port 5060).
pub fn host_port(uri: &str) -> Option<(String, u16)> {
    let uri = message::uri_of(uri.trim());
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let rest = rest.split([';', '?']).next()?;
    let hostport = rest.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 5060,
    };
    Some((host, port))
}

pub async fn resolve((host, port): &(String, u16)) -> Result<SocketAddr, String> {
    let lookup = tokio::net::lookup_host((host.as_str(), *port));
    let mut addrs = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| format!("resolving {host}: timed out"))?
        .map_err(|e| format!("resolving {host}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("resolving {host}: no address"))
}

/// The address the kernel would use towards `dest`: what we write in Via, Contact and SDP
/// when bound to a wildcard address.
pub fn local_ip_towards(bound: IpAddr, dest: SocketAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    let probe = std::net::UdpSocket::bind((bound, 0)).and_then(|s| {
        s.connect(dest)?;
        s.local_addr()
    });
    probe.map(|a| a.ip()).unwrap_or(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_sip_uris_or_e164_numbers_via_the_proxy() {
        let t = target_of("sip:agence@127.0.0.1:5081", None).expect("ok");
        assert_eq!(t.request_uri, "sip:agence@127.0.0.1:5081");
        assert_eq!(t.first_hop, ("127.0.0.1".into(), 5081));
        let t = target_of("+33123456789", Some("sip:127.0.0.1:5090;lr")).expect("ok");
        assert_eq!(t.request_uri, "sip:+33123456789@127.0.0.1:5090;user=phone");
        assert_eq!(t.first_hop, ("127.0.0.1".into(), 5090));
        let t = target_of("sip:x@far.example", Some("sip:proxy.test")).expect("ok");
        assert_eq!(t.first_hop, ("proxy.test".into(), 5060));
        assert!(target_of("+33123456789", None).is_err());
        assert!(target_of("0123456789", Some("sip:p")).is_err());
        assert!(target_of("sip:", None).is_err());
    }

    #[test]
    fn host_port_reads_name_addrs_params_and_ipv6() {
        assert_eq!(
            host_port("<sip:uas@127.0.0.1:5081;transport=udp>"),
            Some(("127.0.0.1".into(), 5081))
        );
        assert_eq!(host_port("sip:[::1]:5070"), Some(("::1".into(), 5070)));
        assert_eq!(
            host_port("sip:proxy.test;lr"),
            Some(("proxy.test".into(), 5060))
        );
        assert_eq!(host_port("mailto:x@y"), None);
    }
}
