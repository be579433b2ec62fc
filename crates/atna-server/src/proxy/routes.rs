//! Per-route requirements of the proxy: which scopes a key must hold for a path prefix and (optionally) some methods.
//! Every route that matches a request adds its scopes; none can remove a requirement, so the order of routes does not
//! matter and a broad route (`/`) cannot open a narrow one (`/admin`).

use std::borrow::Cow;

use axum::http::Method;

use crate::gate::{Requirements, MAX_REQUIRED_SCOPES};

/// One `[[proxy.routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// A normalised path (see [`super::path::normalise`]); it matches itself and the paths below it, segment by
    /// segment: `/admin` matches `/admin` and `/admin/users`, not `/administrators`.
    pub path_prefix: String,
    /// The methods it applies to; empty: every method.
    pub methods: Vec<Method>,
    /// The scopes a key must all hold.
    pub scopes: Vec<String>,
}

impl Route {
    /// Checks a route from the configuration: a normalised prefix, real scopes, at most
    /// [`MAX_REQUIRED_SCOPES`] of them.
    pub fn new(path_prefix: &str, methods: &[String], scopes: &[String]) -> Result<Self, String> {
        let normal =
            super::path::normalise(path_prefix).map_err(|e| format!("path_prefix {path_prefix:?}: {}", e.detail))?;
        if normal != path_prefix {
            return Err(format!("path_prefix {path_prefix:?} is not in normal form: write {normal:?}"));
        }
        let methods = methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("{m:?} is not an HTTP method"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        atna_domain::Scopes::parse(scopes).map_err(|e| format!("scopes of route {path_prefix:?}: {e}"))?;
        if scopes.len() > MAX_REQUIRED_SCOPES {
            return Err(format!("route {path_prefix:?} requires more than {MAX_REQUIRED_SCOPES} scopes"));
        }
        Ok(Self { path_prefix: path_prefix.to_owned(), methods, scopes: scopes.to_vec() })
    }

    /// Whether the route applies to a request (`path` normalised).
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        let p = self.path_prefix.as_str();
        let under =
            path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || p.ends_with('/') || rest.starts_with('/'));
        under && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// The scopes every route matching the request requires, together.
pub fn requirements<'a>(routes: &'a [Route], method: &Method, path: &str) -> Requirements<'a> {
    let mut scopes: Vec<Cow<'a, str>> = Vec::new();
    for r in routes.iter().filter(|r| r.matches(method, path)) {
        for s in &r.scopes {
            if !scopes.iter().any(|have| have == s) {
                scopes.push(Cow::Borrowed(s));
            }
        }
    }
    Requirements { scopes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, methods: &[&str], scopes: &[&str]) -> Route {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Route::new(prefix, &s(methods), &s(scopes)).unwrap()
    }

    fn required(routes: &[Route], method: Method, path: &str) -> Vec<String> {
        requirements(routes, &method, path).scopes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matching_routes_add_up_by_segment_and_method() {
        let routes = [
            route("/", &[], &["api"]),
            route("/admin", &["post", "DELETE"], &["admin:write"]),
            route("/admin", &[], &["admin:read"]),
            route("/files/", &["PUT"], &["files:write", "api"]),
        ];
        assert_eq!(required(&routes, Method::GET, "/"), ["api"]);
        assert_eq!(required(&routes, Method::GET, "/admin"), ["api", "admin:read"]);
        assert_eq!(required(&routes, Method::POST, "/admin/users"), ["api", "admin:write", "admin:read"]);
        assert_eq!(required(&routes, Method::POST, "/administrators"), ["api"], "segments, not characters");
        assert_eq!(required(&routes, Method::PUT, "/files/a"), ["api", "files:write"]);
        assert_eq!(required(&routes, Method::PUT, "/files"), ["api"], "`/files/` is below `/files`");
        assert!(required(&[], Method::GET, "/x").is_empty());
    }

    #[test]
    fn bad_routes_are_refused_with_a_reason() {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for (prefix, methods, scopes, want) in [
            ("/admin/../x", &[][..], &["a"][..], "`..`"),
            ("admin", &[], &["a"], "starting with `/`"),
            ("//admin", &[], &["a"], "not in normal form"),
            ("/%61dmin", &[], &["a"], "not in normal form: write \"/admin\""),
            ("/admin", &["GE T"], &["a"], "not an HTTP method"),
            ("/admin", &[], &["has space"], "scopes of route"),
        ] {
            let e = Route::new(prefix, &s(methods), &s(scopes)).unwrap_err();
            assert!(e.contains(want), "{prefix}: {e}");
        }
    }
}
