//! The SSRF guard for webhook URLs: users choose them, and atna fetches them from inside the operator's network. A
//! URL is resolved here, every address it resolves to is checked, and the request then connects to the checked
//! address (the client is pinned to it, so a second DNS answer cannot swap it). Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a webhook URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the webhook URL is not a valid http:// or https:// URL")]
    BadUrl,
    #[error("the webhook host {0} does not resolve")]
    NoAddress(String),
    #[error(
        "the webhook host resolves to {0}, a loopback, private, link-local or cloud-metadata address: atna does not \
         send there (an operator can allow it with webhooks_allow_private_addresses)"
    )]
    Private(IpAddr),
}

/// A URL checked and resolved: connect to `addr` for `host`.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub host: String,
    pub addr: SocketAddr,
}

/// Parses a webhook URL without resolving it (for the form: the scheme, a host, no credentials in it).
pub fn parse(url: &str) -> Result<reqwest::Url, Refused> {
    let u = reqwest::Url::parse(url.trim()).map_err(|_| Refused::BadUrl)?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(Refused::BadUrl);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Refused::BadUrl);
    }
    Ok(u)
}

/// Resolves `url` and checks every address, unless `allow_private`.
pub async fn resolve(url: &str, allow_private: bool) -> Result<Target, Refused> {
    let u = parse(url)?;
    let host = u.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = u.port_or_known_default().ok_or(Refused::BadUrl)?;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| Refused::NoAddress(host.clone()))?
            .collect(),
    };
    let first = *addrs.first().ok_or_else(|| Refused::NoAddress(host.clone()))?;
    if !allow_private {
        // Every answer must be public: a name that resolves to a public and a private address is refused.
        if let Some(bad) = addrs.iter().find(|a| forbidden(a.ip())) {
            return Err(Refused::Private(bad.ip()));
        }
    }
    Ok(Target { url: u, host, addr: first })
}

/// Addresses a webhook never goes to: loopback, private, shared (CGNAT), link-local (the cloud metadata service at
/// 169.254.169.254 among them), unspecified, broadcast, multicast, reserved, and IPv6's equivalents (unique local
/// addresses, fd00:ec2::254 among them), including IPv4 addresses embedded in IPv6 ones.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return forbidden_v4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
                || s[0] == 0x2002 // 6to4: an IPv4 address inside
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space (CGNAT), 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking, 198.18.0.0/15
        || o[0] >= 240 // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_and_public_ones_allowed() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(forbidden(bad.parse().unwrap()), "{bad} must be refused");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!forbidden(good.parse().unwrap()), "{good} is public");
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_internal_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8080/",
        ] {
            assert!(matches!(resolve(url, false).await, Err(Refused::Private(_))), "{url}");
        }
        let t = resolve("http://127.0.0.1:9/hook", true).await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        for url in ["ftp://example.com/", "not a url", "http://user:pw@example.com/", "file:///etc/passwd"] {
            assert_eq!(resolve(url, true).await.err(), Some(Refused::BadUrl), "{url}");
        }
    }
}
