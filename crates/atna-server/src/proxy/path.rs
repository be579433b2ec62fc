//! The path a proxied request is matched on and forwarded with. Route requirements and the upstream must see the same
//! path, or a request could match one route at atna and reach another at the upstream (`/admin` written `/%61dmin`,
//! `/public/../admin`, `/admin%2Fx`). So atna normalises once, matches that, and forwards exactly that; whatever it
//! cannot normalise without guessing how the upstream reads it is refused with a 400:
//!
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, the others written in upper case
//!   (RFC 3986 §6.2.2); an escape that is not `%` and two hex digits is refused;
//! - `.` and `..` segments, written plainly or encoded (`%2e`), are refused: resolving them is what path traversal
//!   tricks rely on, and no client of an API needs them;
//! - encoded slashes and backslashes (`%2F`, `%5C`) and plain backslashes are refused: upstreams disagree on whether
//!   they separate segments;
//! - encoded control characters (`%00`–`%1F`, `%7F`) are refused;
//! - runs of slashes are merged (`//a///b` is `/a/b`, as nginx's `merge_slashes` does).
//!
//! The query string is not touched: it is forwarded as the client sent it, and no route looks at it.

use std::fmt::Write;

use crate::error::ApiError;

/// The normalised form of `path` (the path of a request's URI, still percent-encoded), or the 400 to answer.
pub fn normalise(path: &str) -> Result<String, ApiError> {
    if !path.starts_with('/') {
        return Err(invalid("The request target must be a path starting with `/`."));
    }
    // Decoding unreserved escapes first means that an encoded dot makes a dot segment like a plain one.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return Err(invalid("The path has a `%` that is not followed by two hex digits."));
                };
                match v {
                    b'/' | b'\\' => {
                        return Err(invalid(
                            "The path has an encoded slash or backslash (`%2F`, `%5C`); send the path without it.",
                        ))
                    }
                    0..=0x1f | 0x7f => return Err(invalid("The path has an encoded control character.")),
                    v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => decoded.push(v as char),
                    v => {
                        let _ = write!(decoded, "%{v:02X}");
                    }
                }
                i += 3;
            }
            b'\\' => return Err(invalid("The path has a backslash; use `/` between segments.")),
            b => {
                // hyper accepts only visible ASCII in a request target; this keeps the function safe on its own.
                if !(0x21..0x7f).contains(&b) {
                    return Err(invalid("The path has a character that must be percent-encoded."));
                }
                decoded.push(b as char);
                i += 1;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(invalid("The path has a `.` or `..` segment; send the path it stands for instead."));
        }
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

fn invalid(detail: &'static str) -> ApiError {
    ApiError::bad_request("invalid_path", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_to_one_spelling() {
        for (given, want) in [
            ("/", "/"),
            ("/v1/invoices", "/v1/invoices"),
            ("/v1/invoices/", "/v1/invoices/"),
            ("//v1///invoices", "/v1/invoices"),
            ("///", "/"),
            ("/%61dmin", "/admin"),
            ("/a%7eb%2D%5f", "/a~b-_"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/a..b/.c/d.", "/a..b/.c/d."),
            ("/search:q=a,b;c", "/search:q=a,b;c"),
        ] {
            assert_eq!(normalise(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn what_would_need_a_guess_is_refused() {
        for bad in [
            "/a/../admin",
            "/a/./b",
            "/..",
            "/.",
            "/a/%2e%2e/admin",
            "/a/.%2E/admin",
            "/%2e/admin",
            "/admin%2Fusers",
            "/admin%2fusers",
            "/admin%5Cusers",
            "/admin\\users",
            "/a%00b",
            "/a%0a",
            "/a%7F",
            "/a%",
            "/a%4",
            "/a%zz",
            "*",
            "admin",
            "",
        ] {
            let e = normalise(bad).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (400, "invalid_path"), "{bad}");
        }
    }
}
