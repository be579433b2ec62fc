//! hyper's own answers to request heads it cannot parse, given a problem document.
//!
//! hyper answers a head it refuses before atna sees a request: `431` (more than 100 header fields, or a head over
//! its ~400 KB buffer, URL included), `414` (a URL over 65,534 bytes) and `400` (not HTTP/1.x), each a bare head with
//! `content-length: 0` and no body, and then closes the connection. hyper has no hook to change that answer, so the
//! connection's socket ([`Tracked`](super::watchdog::Tracked)) recognises it on its way out and writes
//! `application/problem+json` with a stable code instead.
//!
//! What tells hyper's answer from one of atna's: every answer to a request the service got follows a
//! `request_started`, and the socket counts the response heads written ([`Heads`]); a head written when as many have
//! been written as requests were started is hyper's own. It must also look exactly like hyper's (status 400, 414 or
//! 431, only `content-length: 0`, `date` and `connection` headers, nothing after the head), so a body that happens
//! to start with `HTTP/1.1` is never touched. Once a connection is exempt from timers (upgraded, or after a streamed
//! answer of unknown length) its bytes are no longer inspected, and hyper's bare answer goes out unchanged there.

use std::sync::LazyLock;

/// The response heads written on one connection, against the requests its service was handed.
#[derive(Default)]
pub struct Heads {
    written: u64,
}

impl Heads {
    /// What `buf` (a write starting at its first byte, of which `n` bytes were written) was, given the requests
    /// `started` so far: counts a service's final response head.
    pub fn wrote(&mut self, buf: &[u8], n: usize, started: u64) {
        if n > 0 && self.written < started && is_final_head_start(buf) {
            self.written += 1;
        }
    }

    /// The problem answer to write instead of `buf`, if `buf` is hyper's own answer to a head it refused.
    pub fn replacement(&self, buf: &[u8], started: u64) -> Option<&'static [u8]> {
        if self.written < started {
            return None;
        }
        hyper_refusal(buf).map(|s| s.answer())
    }
}

/// A response head's first bytes with a final (not `1xx`) status.
fn is_final_head_start(buf: &[u8]) -> bool {
    buf.len() > 9 && buf.starts_with(b"HTTP/1.") && buf[9] != b'1'
}

/// The answers hyper makes on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadRequest,
    UriTooLong,
    HeadTooLarge,
}

impl Refusal {
    /// The status, its reason phrase, the problem code and the detail.
    fn parts(self) -> (u16, &'static str, &'static str, &'static str) {
        match self {
            Refusal::BadRequest => (
                400,
                "Bad Request",
                "malformed_request",
                "The request is not valid HTTP/1.1: its method, URL, version or a header field is malformed.",
            ),
            Refusal::UriTooLong => {
                (414, "URI Too Long", "uri_too_long", "The request's URL is longer than 65,534 bytes.")
            }
            Refusal::HeadTooLarge => (
                431,
                "Request Header Fields Too Large",
                "request_header_fields_too_large",
                "The request's head is too large: more than 100 header fields, or more than 400 KB with its URL. \
                 Send fewer or shorter header fields, or move data from the URL into the body.",
            ),
        }
    }

    /// The whole answer: head and problem document.
    fn answer(self) -> &'static [u8] {
        static ANSWERS: LazyLock<[Vec<u8>; 3]> = LazyLock::new(|| {
            [Refusal::BadRequest, Refusal::UriTooLong, Refusal::HeadTooLarge].map(|r| {
                let (status, title, code, detail) = r.parts();
                let body = format!(
                    r#"{{"type":"urn:atna:problem:{code}","title":"{title}","status":{status},"detail":"{detail}","code":"{code}"}}"#
                );
                format!(
                    "HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\nconnection: close\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
        });
        &ANSWERS[self as usize]
    }
}

/// Whether `buf` is exactly hyper's bodyless answer to a refused head, and which.
fn hyper_refusal(buf: &[u8]) -> Option<Refusal> {
    if !buf.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let head = buf.strip_suffix(b"\r\n\r\n")?;
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let refusal = match lines.next()? {
        "HTTP/1.1 400 Bad Request" => Refusal::BadRequest,
        "HTTP/1.1 414 URI Too Long" => Refusal::UriTooLong,
        "HTTP/1.1 431 Request Header Fields Too Large" => Refusal::HeadTooLarge,
        _ => return None,
    };
    let mut has_length = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => has_length = true,
            "date" | "connection" => {}
            _ => return None,
        }
    }
    has_length.then_some(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answers_are_well_formed_problem_documents() {
        for (r, status, code) in [
            (Refusal::BadRequest, 400, "malformed_request"),
            (Refusal::UriTooLong, 414, "uri_too_long"),
            (Refusal::HeadTooLarge, 431, "request_header_fields_too_large"),
        ] {
            let answer = std::str::from_utf8(r.answer()).unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head} / {}", body.len());
            assert!(head.contains("\r\ncontent-type: application/problem+json"));
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["status"], status);
            assert_eq!(v["code"], code);
            assert_eq!(v["type"], format!("urn:atna:problem:{code}"));
            assert!(head.starts_with(&format!("HTTP/1.1 {status} {}\r\n", v["title"].as_str().unwrap())));
        }
    }

    #[test]
    fn only_hyper_s_own_bare_answers_are_recognised() {
        let date = "date: Sat, 28 Nov 2026 10:00:00 GMT";
        let bare = format!("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{date}\r\n\r\n");
        assert_eq!(hyper_refusal(bare.as_bytes()), Some(Refusal::HeadTooLarge));
        let closing = format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n\r\n");
        assert_eq!(hyper_refusal(closing.as_bytes()), Some(Refusal::BadRequest));
        let typed = "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_refusal(typed.as_bytes()), None, "an answer with any other header is not hyper's");
        let with_body = "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno";
        assert_eq!(hyper_refusal(with_body.as_bytes()), None);
        assert_eq!(hyper_refusal(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"), None);

        // Counted heads: once the service was handed a request, the next final head is its answer, never replaced.
        let mut heads = Heads::default();
        assert!(heads.replacement(bare.as_bytes(), 0).is_some(), "no request started: hyper's answer");
        assert!(heads.replacement(bare.as_bytes(), 1).is_none(), "the service's answer to request 1");
        heads.wrote(b"HTTP/1.1 100 Continue\r\n\r\n", 25, 1);
        assert!(heads.replacement(bare.as_bytes(), 1).is_none(), "an interim answer is not the answer");
        heads.wrote(bare.as_bytes(), 0, 1);
        assert!(heads.replacement(bare.as_bytes(), 1).is_none(), "nothing written, nothing counted");
        heads.wrote(bare.as_bytes(), 10, 1);
        assert_eq!(heads.replacement(bare.as_bytes(), 1), Some(Refusal::HeadTooLarge.answer()), "after it: hyper's");
        heads.wrote(bare.as_bytes(), 10, 1);
        assert_eq!(heads.written, 1, "a body starting like a head is not counted");
    }
}
