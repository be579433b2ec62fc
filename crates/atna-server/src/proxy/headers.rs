//! What the proxy changes in the headers on the way to the upstream and back. Towards the upstream: hop-by-hop
//! headers go (and every header the `Connection` header names), client-sent `X-Atna-*` go, the key goes (unless the
//! configuration says to forward it), `Host` becomes the upstream's, `X-Forwarded-For`/`-Proto`/`-Host` say who asked,
//! and the key's identity is added. Back to the client: hop-by-hop headers go.

use std::net::IpAddr;

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::gate::{Identity, IDENTITY_HEADERS};

/// Hop-by-hop headers (RFC 9110 §7.6.1), with the non-standard ones proxies also drop (`Keep-Alive`,
/// `Proxy-Connection`). `Transfer-Encoding` is hyper's own business on each connection.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether the request asks to switch protocols (`Connection: upgrade` and an `Upgrade` header), e.g. a WebSocket.
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && connection_names(h).any(|n| n.eq_ignore_ascii_case("upgrade"))
}

fn connection_names(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// Removes the hop-by-hop headers and every header that `Connection` names.
pub fn remove_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> =
        connection_names(h).filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()).collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// How the request reached the proxy, for the forwarding headers.
pub struct Hop<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is one of `proxy_trusted_proxies`: its forwarding headers are kept and added to.
    pub trusted: bool,
    /// Whether `Authorization` and the key headers go to the upstream.
    pub forward_key: bool,
    /// The headers that may carry a key besides `Authorization`.
    pub key_headers: &'a [HeaderName],
}

/// Turns the client's headers into the upstream's. `upgrade`: the client's `Upgrade` value, to pass on.
pub fn to_upstream(h: &mut HeaderMap, hop: &Hop<'_>, identity: &Identity, upgrade: Option<HeaderValue>) {
    remove_hop_by_hop(h);
    let atna: Vec<HeaderName> = h.keys().filter(|n| n.as_str().starts_with("x-atna-")).cloned().collect();
    for n in atna {
        h.remove(n);
    }
    if !hop.forward_key {
        h.remove(header::AUTHORIZATION);
        for n in hop.key_headers {
            h.remove(n);
        }
    }
    // The client's Host becomes X-Forwarded-Host; the upstream gets its own name (hyper writes it from the URI).
    let host = h.remove(header::HOST);
    if hop.trusted {
        let peer = hop.peer.to_string();
        let chain: Vec<&str> = h.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
        let value = if chain.is_empty() { peer } else { format!("{}, {peer}", chain.join(", ")) };
        set(h, X_FORWARDED_FOR, value);
        if !h.contains_key(&X_FORWARDED_PROTO) {
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        if let (false, Some(host)) = (h.contains_key(&X_FORWARDED_HOST), host) {
            h.insert(X_FORWARDED_HOST, host);
        }
    } else {
        // What an untrusted client says about earlier hops is not passed on as if a proxy had said it.
        h.remove(header::FORWARDED);
        h.remove(X_REAL_IP);
        set(h, X_FORWARDED_FOR, hop.peer.to_string());
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        match host {
            Some(host) => h.insert(X_FORWARDED_HOST, host),
            None => h.remove(X_FORWARDED_HOST),
        };
    }
    for name in IDENTITY_HEADERS {
        if let Some(v) = identity.get(&name) {
            h.insert(name, v.clone());
        }
    }
    if let Some(protocol) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, protocol);
    }
}

/// Turns the upstream's response headers into the client's. `switched`: a `101`, whose `Upgrade` is kept.
pub fn to_client(h: &mut HeaderMap, switched: bool) {
    let upgrade = if switched { h.get(header::UPGRADE).cloned() } else { None };
    remove_hop_by_hop(h);
    if let Some(protocol) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, protocol);
    }
}

fn set(h: &mut HeaderMap, name: HeaderName, value: String) {
    match HeaderValue::try_from(value) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => {
            h.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::from_values(["id1", "name", "owner", "a%40b", "x y"].map(HeaderValue::from_static))
    }

    fn client() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("host", "api.example.com"),
            ("authorization", "Bearer atna_x"),
            ("x-api-key", "atna_y"),
            ("x-atna-key-id", "forged"),
            ("x-atna-owner-email", "forged"),
            ("x-atna-anything", "forged"),
            ("connection", "keep-alive, x-private, Foo"),
            ("x-private", "hop"),
            ("foo", "hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic eA=="),
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("accept", "application/json"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        h
    }

    fn hop(trusted: bool, forward_key: bool) -> Hop<'static> {
        static KEYS: [HeaderName; 1] = [HeaderName::from_static("x-api-key")];
        Hop { peer: "10.0.0.7".parse().unwrap(), trusted, forward_key, key_headers: &KEYS }
    }

    #[test]
    fn an_untrusted_clients_headers_are_cleaned_and_the_identity_added() {
        let mut h = client();
        to_upstream(&mut h, &hop(false, false), &identity(), None);
        for gone in [
            "authorization",
            "x-api-key",
            "x-atna-anything",
            "x-atna-status",
            "cache-control",
            "connection",
            "x-private",
            "foo",
            "keep-alive",
            "te",
            "proxy-authorization",
            "forwarded",
            "host",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone}: {:?}", h.get(gone));
        }
        assert_eq!(h["x-atna-key-id"], "id1");
        assert_eq!(h.get_all("x-atna-key-id").iter().count(), 1);
        assert_eq!(h["x-atna-owner-email"], "a%40b");
        assert_eq!(h["x-forwarded-for"], "10.0.0.7", "an untrusted client's chain is dropped");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["accept"], "application/json");
    }

    #[test]
    fn a_trusted_proxys_chain_is_extended_and_the_key_forwarded_when_configured() {
        let mut h = client();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        to_upstream(&mut h, &hop(true, true), &identity(), Some(HeaderValue::from_static("websocket")));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=203.0.113.9");
        assert_eq!((h["authorization"].as_bytes(), h["x-api-key"].as_bytes()), (&b"Bearer atna_x"[..], &b"atna_y"[..]));
        assert_eq!((h["connection"].as_bytes(), h["upgrade"].as_bytes()), (&b"upgrade"[..], &b"websocket"[..]));
        assert_eq!(h["x-atna-key-id"], "id1");
    }

    #[test]
    fn upgrades_are_recognised_and_kept_only_on_a_101() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(!wants_upgrade(&h));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&h));
        let mut r = h.clone();
        to_client(&mut r, true);
        assert_eq!((r["connection"].as_bytes(), r["upgrade"].as_bytes()), (&b"upgrade"[..], &b"websocket"[..]));
        to_client(&mut h, false);
        assert!(h.is_empty());
    }
}
