//! Address ranges (`10.0.0.0/8`, `fd00::/8`, or one address) for `trusted_proxies`: parsed once at start, checked
//! against the peer of every connection, so `contains` is a few integer operations. The type lives in `atna-domain`
//! (per-key IP allowlists are stored with keys and use the same ranges); this module keeps the server's name for it.

pub use atna_domain::cidr::{any_contains, Cidr, CidrError};
