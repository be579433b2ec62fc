//! Rules at the gate: whether a request made with a good key may go through. The verifier (`verify.rs`) answers "is
//! this key good, whose is it"; this module answers "may it do this now", once for every entry point that enforces
//! (whoami and every Bearer route, verify, forward-auth, and the reverse proxy). Nothing here touches the store: the
//! pure checks first (IP allowlist, scopes), then the key's quota and rate limit in memory (`limits.rs`); a refused
//! request consumes nothing (the caller counts a use only once `admit` says yes).

use std::borrow::Cow;
use std::sync::LazyLock;

use atna_domain::{Email, Millis, VerifyCode};
use atna_store::KeyRecord;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ApiError;
pub use crate::limits::Admitted;
use crate::limits::Limiter;
use crate::verify::{KeyEntry, Verifier};

/// Most scope requirements one request may carry (query parameters and headers together).
pub const MAX_REQUIRED_SCOPES: usize = 32;
/// Longest single requirement, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;

/// Header that a gateway's configuration adds to require scopes (space- or comma-separated), for proxies that cannot
/// put a query string on the sub-request (Envoy's `headers_to_add`).
pub const REQUIRE_SCOPE_HEADER: HeaderName = HeaderName::from_static("x-atna-require-scope");

/// The identity headers forward-auth answers with, in this order.
pub const IDENTITY_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-atna-key-id"),
    HeaderName::from_static("x-atna-key-name"),
    HeaderName::from_static("x-atna-owner-id"),
    HeaderName::from_static("x-atna-owner-email"),
    HeaderName::from_static("x-atna-scopes"),
];

/// A key's identity as forward-auth answers it: the values of [`IDENTITY_HEADERS`], encoded once (when a key is
/// first used through forward-auth or the proxy) and shared by every answer after that. Only the values are kept (about
/// 300 bytes, not the 1.5 KB of a whole header map per cached key); each answer puts them in a map of its own.
#[derive(Debug, Clone)]
pub struct Identity {
    /// In the order of [`IDENTITY_HEADERS`].
    values: [HeaderValue; 5],
}

impl Identity {
    /// Names and e-mail addresses may be Unicode: header values are percent-encoded UTF-8 (every byte outside
    /// printable ASCII, and `%` itself), so one decoder reads them all.
    pub fn new(key: &KeyRecord, owner_email: &Email) -> Self {
        let scopes: Vec<&str> = key.scopes.iter().collect();
        let value =
            |s: &str| HeaderValue::try_from(percent_encode(s).into_owned()).unwrap_or(HeaderValue::from_static(""));
        let values = [
            value(key.id.as_str()),
            value(key.name.as_str()),
            value(&key.owner.0.to_string()),
            value(owner_email.as_str()),
            value(&scopes.join(" ")),
        ];
        Self { values }
    }

    /// Identity values as they are (tests).
    #[doc(hidden)]
    pub fn from_values(values: [HeaderValue; 5]) -> Self {
        Self { values }
    }

    /// The headers of an allowed forward-auth answer: [`IDENTITY_HEADERS`] with this key's values, for a key with a
    /// rate limit `RateLimit-Policy` and `RateLimit` (`rate`, from [`Admitted::rate_values`]), then
    /// `X-Atna-Status: 200`, `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`. The values are shared,
    /// not copied.
    ///
    /// Every forward-auth answer of a gateway's every request builds this map, so it is a copy of a template with the
    /// names in place whose first values are replaced in order: a third of the instructions of inserting each header
    /// (which hashes its name and probes the map).
    pub fn allowed(&self, rate: Option<[HeaderValue; 2]>) -> HeaderMap {
        static PLAIN: LazyLock<HeaderMap> = LazyLock::new(|| allowed_template(false));
        static RATED: LazyLock<HeaderMap> = LazyLock::new(|| allowed_template(true));
        let mut allowed = if rate.is_some() { RATED.clone() } else { PLAIN.clone() };
        let values = self.values.iter().cloned().chain(rate.into_iter().flatten());
        for ((_, slot), value) in allowed.iter_mut().zip(values) {
            *slot = value;
        }
        allowed
    }

    /// The value of one identity header.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        IDENTITY_HEADERS.iter().position(|n| n == name).map(|i| &self.values[i])
    }
}

/// The names of an allowed forward-auth answer in [`Identity::allowed`]'s order, with placeholders where its values
/// go: a map's entries iterate in the order they were inserted (the test `allowed_headers_carry_their_own_values`
/// would notice otherwise).
fn allowed_template(rated: bool) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(IDENTITY_HEADERS.len() + 5);
    let placeholder = HeaderValue::from_static("");
    for name in IDENTITY_HEADERS {
        h.insert(name, placeholder.clone());
    }
    if rated {
        h.insert(crate::limits::POLICY_HEADER, placeholder.clone());
        h.insert(crate::limits::STATE_HEADER, placeholder);
    }
    h.insert(STATUS_HEADER, HeaderValue::from_static("200"));
    h.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(axum::http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h
}

/// The status header every forward-auth answer carries (nginx reads it to give the client the real status).
pub const STATUS_HEADER: HeaderName = HeaderName::from_static("x-atna-status");

/// Percent-encodes every byte that is not printable ASCII, and `%`.
pub fn percent_encode(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    if s.bytes().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// What the gateway's configuration requires of the key for this request. Requirements only add up: whoever adds
/// one (the configuration, or a client through a path the configuration forwards) can only narrow what passes.
#[derive(Debug, Default)]
pub struct Requirements<'a> {
    /// Scopes the key must all hold.
    pub scopes: Vec<Cow<'a, str>>,
}

impl<'a> Requirements<'a> {
    /// Reads `scope=` query parameters (repeatable) and [`REQUIRE_SCOPE_HEADER`] headers (repeatable; space- or
    /// comma-separated). Too many or too long requirements are a `400`: they come from a broken configuration or a
    /// client playing games, never from a legitimate request.
    pub fn read(query: Option<&'a str>, headers: &'a HeaderMap) -> Result<Self, ApiError> {
        let mut scopes: Vec<Cow<'a, str>> = Vec::new();
        if let Some(q) = query {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                if k == "scope" {
                    scopes.extend(split(v));
                }
            }
        }
        for h in headers.get_all(REQUIRE_SCOPE_HEADER) {
            let text = h.to_str().map_err(|_| too_much("is not ASCII"))?;
            scopes.extend(split(Cow::Borrowed(text)));
        }
        if scopes.len() > MAX_REQUIRED_SCOPES {
            return Err(too_much("names too many scopes"));
        }
        if scopes.iter().any(|s| s.len() > MAX_SCOPE_LEN) {
            return Err(too_much("names a scope that is too long"));
        }
        Ok(Self { scopes })
    }
}

/// The scopes in one requirement value (space- or comma-separated), borrowing where the value is borrowed.
fn split(v: Cow<'_, str>) -> Vec<Cow<'_, str>> {
    match v {
        Cow::Borrowed(s) => s.split([' ', ',']).filter(|p| !p.is_empty()).map(Cow::Borrowed).collect(),
        Cow::Owned(s) => s.split([' ', ',']).filter(|p| !p.is_empty()).map(|p| Cow::Owned(p.to_owned())).collect(),
    }
}

fn too_much(what: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_requirements",
        format!("The scope requirement {what} (at most {MAX_REQUIRED_SCOPES} scopes of {MAX_SCOPE_LEN} bytes)."),
    )
}

/// The request a gateway is asking about: the client's address and, where the gateway says, the original method and
/// URI (`X-Forwarded-Method`/`X-Forwarded-Uri` from Traefik and Caddy, `X-Original-Method`/`X-Original-URI` by the
/// nginx convention). The context for logs, the audit trail and per-key rules; never a source of identity.
/// The method and URI are read only when something asks (a refusal's log line, a rule that needs them), so an allowed
/// request pays nothing for them.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub ip: Option<std::net::IpAddr>,
    headers: Option<&'a HeaderMap>,
}

const METHOD_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-forwarded-method"), HeaderName::from_static("x-original-method")];
const URI_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-forwarded-uri"), HeaderName::from_static("x-original-uri")];

impl<'a> Context<'a> {
    /// The context of a gateway's request: the client's address and its headers.
    pub fn read(headers: &'a HeaderMap, ip: Option<std::net::IpAddr>) -> Self {
        Self { ip, headers: Some(headers) }
    }

    /// A context with only an address (entry points that are not asked on behalf of another request).
    pub fn ip(ip: Option<std::net::IpAddr>) -> Self {
        Self { ip, headers: None }
    }

    /// The original request's method, when the gateway says (values that are not ASCII are ignored).
    pub fn method(&self) -> Option<&'a str> {
        self.first(&METHOD_HEADERS)
    }

    /// The original request's URI, when the gateway says.
    pub fn uri(&self) -> Option<&'a str> {
        self.first(&URI_HEADERS)
    }

    fn first(&self, names: &[HeaderName]) -> Option<&'a str> {
        let headers = self.headers?;
        names.iter().find_map(|n| headers.get(n).and_then(|v| v.to_str().ok()))
    }
}

/// Whether the key may be used from the client's address: always without an IP allowlist (one `is_empty` check on
/// the hot path); with one, only from inside it, and never from an unknown address (fail closed).
pub fn admit_ip(entry: &KeyEntry, ip: Option<std::net::IpAddr>) -> Result<(), ApiError> {
    if entry.record.rules.ip_allowlist.permits(ip) {
        Ok(())
    } else {
        tracing::debug!(key = %entry.record.id, ?ip, "refused: outside the key's IP allowlist");
        Err(ApiError::ip_not_allowed())
    }
}

/// Decides whether a request made with a good key (status and expiry already checked at `now`) may go through, in
/// the order the rules are cheapest: the client's address is in the key's IP allowlist, every required scope is held,
/// quota is left; then the rate limit consumes, then the quota does. The one decision every entry point calls.
pub fn admit(
    entry: &KeyEntry,
    req: &Requirements<'_>,
    ctx: &Context<'_>,
    limits: &Limiter,
    now: Millis,
) -> Result<Admitted, ApiError> {
    admit_pure(entry, req, ctx)?;
    let admitted = limits.admit(entry, now);
    if let Err(e) = &admitted {
        tracing::debug!(key = %entry.record.id, method = ctx.method(), uri = ctx.uri(), code = e.code, "refused by the key's limits");
    }
    admitted
}

/// Counts a rule's refusal of a good key in the key's usage, under the verify code its problem `code` names
/// (`ip_not_allowed` → `IP_NOT_ALLOWED`; a rule whose code names no verify code is not counted), and passes it on.
/// `now` is the time the key was checked at.
pub fn counted(verifier: &Verifier, entry: &KeyEntry, now: Millis, e: ApiError) -> ApiError {
    if let Some(code) = refusal_code(e.code) {
        verifier.count_refusal(entry, code, now);
    }
    e
}

/// The verify code a rule's refusal stands for: the one its problem `code` names (`ip_not_allowed` →
/// `IP_NOT_ALLOWED`, `rate_limited` → `RATE_LIMITED`, …); `None` for a problem that is no verify code.
pub fn refusal_code(problem: &str) -> Option<VerifyCode> {
    VerifyCode::ALL.iter().copied().find(|c| c.as_str().eq_ignore_ascii_case(problem))
}

/// The checks of [`admit`] that consume nothing: IP allowlist, then scopes.
fn admit_pure(entry: &KeyEntry, req: &Requirements<'_>, ctx: &Context<'_>) -> Result<(), ApiError> {
    admit_ip(entry, ctx.ip)?;
    let missing: Vec<&str> =
        req.scopes.iter().map(|s| s.as_ref()).filter(|s| !entry.record.scopes.contains(s)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        tracing::debug!(key = %entry.record.id, method = ctx.method(), uri = ctx.uri(), ip = ?ctx.ip, ?missing,
            "forward-auth refused: scope missing");
        Err(ApiError::missing_scopes(&missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_headers_carry_their_own_values() {
        let values = ["k1", "name", "7", "a%40b", "api"].map(HeaderValue::from_static);
        let identity = Identity::from_values(values.clone());
        let rate =
            [HeaderValue::from_static("\"default\";q=100;w=60"), HeaderValue::from_static("\"default\";r=9;t=3")];
        for rated in [false, true] {
            let h = identity.allowed(rated.then(|| rate.clone()));
            for (name, value) in IDENTITY_HEADERS.iter().zip(&values) {
                assert_eq!(h.get(name), Some(value), "{name}");
            }
            assert_eq!(h.get(STATUS_HEADER).unwrap(), "200");
            assert_eq!(h.get(axum::http::header::CACHE_CONTROL).unwrap(), "no-store");
            assert_eq!(h.get(axum::http::header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
            assert_eq!(h.get(crate::limits::POLICY_HEADER), rated.then_some(&rate[0]));
            assert_eq!(h.get(crate::limits::STATE_HEADER), rated.then_some(&rate[1]));
            assert_eq!(h.len(), if rated { 10 } else { 8 });
        }
    }

    #[test]
    fn only_unprintable_bytes_and_percent_are_encoded() {
        assert_eq!(percent_encode("billing-26_11_2026-14_05"), "billing-26_11_2026-14_05");
        assert_eq!(percent_encode("café"), "caf%C3%A9");
        assert_eq!(percent_encode("50% off"), "50%25 off");
        assert_eq!(percent_encode("a\r\nb"), "a%0D%0Ab");
    }

    #[test]
    fn requirements_add_up_from_query_and_headers() {
        let mut h = HeaderMap::new();
        h.append(REQUIRE_SCOPE_HEADER, HeaderValue::from_static("invoices:write, reports:read"));
        h.append(REQUIRE_SCOPE_HEADER, HeaderValue::from_static("x"));
        let r = Requirements::read(Some("scope=invoices%3Aread&scope=&other=1&scope=a+b"), &h).unwrap();
        let got: Vec<&str> = r.scopes.iter().map(|s| s.as_ref()).collect();
        assert_eq!(got, ["invoices:read", "a", "b", "invoices:write", "reports:read", "x"]);
        assert!(Requirements::read(None, &HeaderMap::new()).unwrap().scopes.is_empty());
    }

    #[test]
    fn the_original_request_is_read_from_either_convention() {
        let mut h = HeaderMap::new();
        h.insert("x-original-method", HeaderValue::from_static("POST"));
        h.insert("x-original-uri", HeaderValue::from_static("/invoices?x=1"));
        let c = Context::read(&h, None);
        assert_eq!((c.method(), c.uri()), (Some("POST"), Some("/invoices?x=1")));
        h.insert("x-forwarded-uri", HeaderValue::from_static("/reports"));
        assert_eq!(Context::read(&h, None).uri(), Some("/reports"), "Traefik's and Caddy's name first");
        assert_eq!(Context::read(&HeaderMap::new(), None).method(), None);
        assert_eq!(Context::ip(None).uri(), None);
    }

    #[test]
    fn too_many_or_too_long_requirements_are_refused() {
        let many = (0..=MAX_REQUIRED_SCOPES).map(|i| format!("scope=s{i}")).collect::<Vec<_>>().join("&");
        assert_eq!(Requirements::read(Some(&many), &HeaderMap::new()).unwrap_err().code, "invalid_requirements");
        let long = format!("scope={}", "x".repeat(MAX_SCOPE_LEN + 1));
        assert_eq!(Requirements::read(Some(&long), &HeaderMap::new()).unwrap_err().code, "invalid_requirements");
        let mut h = HeaderMap::new();
        h.insert(REQUIRE_SCOPE_HEADER, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(Requirements::read(None, &h).unwrap_err().code, "invalid_requirements");
    }
}
