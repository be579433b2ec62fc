//! Address ranges (`203.0.113.0/24`, `2001:db8::/32`, or one address) for per-key IP allowlists and the server's
//! `trusted_proxies`, and the per-key IP allowlist built from them.
//! Parsed once (when a key is created or loaded), so checking an address is a few integer operations per range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address and a prefix length. The address is stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a range could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address (expected e.g. 203.0.113.0/24, 192.168.1.10 or 2001:db8::/32)")]
    Address(String),
    #[error("`{0}` has a prefix length that is not a number from 0 to {1}")]
    Prefix(String, u8),
}

impl Cidr {
    /// The range `network/prefix`; host bits of `network` are ignored. `None` if the prefix is too long.
    pub fn new(network: IpAddr, prefix: u8) -> Option<Self> {
        let network = network.to_canonical();
        (prefix <= max_prefix(network)).then(|| Self { network: mask(network, prefix), prefix })
    }

    /// Whether `ip` is inside. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack listener reports)
    /// count as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => mask(ip, self.prefix) == self.network,
            _ => false,
        }
    }

    /// Whether every address of `self` is inside `outer`.
    pub fn is_within(&self, outer: &Cidr) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.network)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| CidrError::Address(s.to_owned()))?;
        let ip = ip.to_canonical();
        let max = max_prefix(ip);
        let prefix = match prefix {
            // Digits only: `u8::from_str` would also take `+8`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(|| CidrError::Prefix(s.to_owned(), max))?
            }
            Some(_) => return Err(CidrError::Prefix(s.to_owned(), max)),
            None => max,
        };
        Ok(Self { network: mask(ip, prefix), prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether any of `ranges` contains `ip`.
pub fn any_contains(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|c| c.contains(ip))
}

/// Most ranges one key's allowlist may hold.
pub const MAX_ALLOWLIST_ENTRIES: usize = 64;

/// The addresses a key may be used from. Empty: anywhere (no allowlist). Kept in the order given, duplicates
/// removed, every range in canonical form (`203.0.113.7` is stored as `203.0.113.7/32`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowlist(Vec<Cidr>);

/// Why an allowlist could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    #[error("Invalid IP allowlist entry: {0}.")]
    Entry(#[from] CidrError),
    #[error("An IP allowlist holds at most {MAX_ALLOWLIST_ENTRIES} ranges; this one has {0}.")]
    TooMany(usize),
}

impl IpAllowlist {
    /// Reads ranges as a person or client wrote them (bare addresses mean one address). Blank entries are skipped,
    /// so an empty list (or only blanks) is no allowlist.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AllowlistError> {
        let mut out: Vec<Cidr> = Vec::new();
        for e in entries.iter().map(|e| e.as_ref().trim()).filter(|e| !e.is_empty()) {
            let c: Cidr = e.parse()?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.len() > MAX_ALLOWLIST_ENTRIES {
            return Err(AllowlistError::TooMany(out.len()));
        }
        Ok(Self(out))
    }

    /// Reads text with one range per line or comma- or space-separated (the dashboard's field, `--allow-ip a,b`).
    pub fn parse_text(text: &str) -> Result<Self, AllowlistError> {
        let parts: Vec<&str> = text.split(|c: char| c == ',' || c.is_whitespace()).collect();
        Self::parse(&parts)
    }

    /// The stored form: canonical ranges, space-separated; `None` for no allowlist.
    pub fn to_stored(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.to_string())
    }

    /// Reads the stored form back (`None` or blank: no allowlist).
    pub fn from_stored(s: Option<&str>) -> Result<Self, AllowlistError> {
        s.map_or_else(|| Ok(Self::default()), Self::parse_text)
    }

    /// No allowlist: the key works from anywhere.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges.
    pub fn ranges(&self) -> &[Cidr] {
        &self.0
    }

    /// Whether a request from `ip` may use the key. Without an allowlist, always; with one, only from inside it, and
    /// never from an unknown address (fail closed).
    pub fn permits(&self, ip: Option<IpAddr>) -> bool {
        self.0.is_empty() || ip.is_some_and(|ip| any_contains(&self.0, ip))
    }

    /// The ranges of `self` that are not inside any range of `parent` (a key may not make a key usable from more
    /// places than itself). Empty when `parent` has no allowlist.
    pub fn beyond<'a>(&'a self, parent: &'a IpAllowlist) -> impl Iterator<Item = &'a Cidr> + 'a {
        self.0.iter().filter(move |c| !parent.is_empty() && !parent.0.iter().any(|p| c.is_within(p)))
    }
}

impl fmt::Display for IpAllowlist {
    /// Space-separated canonical ranges (the stored form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_and_nothing_else() {
        assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert_eq!(c("192.168.1.77/24").to_string(), "192.168.1.0/24");
        assert!(c("203.0.113.9").contains(ip("203.0.113.9")));
        assert!(!c("203.0.113.9").contains(ip("203.0.113.8")));
        assert_eq!(c("203.0.113.9").to_string(), "203.0.113.9/32");
        assert_eq!(c("2001:DB8::1").to_string(), "2001:db8::1/128");
        assert!(!c("0.0.0.0/0").contains(ip("::1")), "an IPv4 range holds no IPv6 address");
        assert!(c("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!c("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")), "IPv4-mapped peers count as IPv4");
    }

    #[test]
    fn bad_ranges_are_clear_errors() {
        for (s, want) in [
            ("", "is not an IP address"),
            ("10.0.0/8", "is not an IP address"),
            ("example.com", "is not an IP address"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("10.0.0.0/", "from 0 to 32"),
            ("10.0.0.0/+8", "from 0 to 32"),
            ("10.0.0.0/0008", "from 0 to 32"),
            ("::/129", "from 0 to 128"),
            ("10.0.0.0/8/8", "from 0 to 32"),
        ] {
            let e = s.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn allowlists_parse_dedupe_and_round_trip() {
        let a = IpAllowlist::parse_text("203.0.113.0/24,\n2001:db8::/32  203.0.113.9/24\n\n198.51.100.7").unwrap();
        assert_eq!(a.to_stored().as_deref(), Some("203.0.113.0/24 2001:db8::/32 198.51.100.7/32"));
        assert_eq!(IpAllowlist::from_stored(a.to_stored().as_deref()).unwrap(), a);
        assert!(IpAllowlist::parse_text(" \n").unwrap().is_empty());
        assert_eq!(IpAllowlist::default().to_stored(), None);
        let e = IpAllowlist::parse(&["10.0.0.0/8", "nope"]).unwrap_err().to_string();
        assert!(e.contains("`nope`"), "{e}");
        let many: Vec<String> = (0..=MAX_ALLOWLIST_ENTRIES).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(IpAllowlist::parse(&many).unwrap_err(), AllowlistError::TooMany(MAX_ALLOWLIST_ENTRIES + 1));
    }

    #[test]
    fn permits_fails_closed_and_beyond_names_wider_ranges() {
        let a = IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32"]).unwrap();
        assert!(a.permits(Some(ip("203.0.113.200"))));
        assert!(a.permits(Some(ip("2001:db8::5"))));
        assert!(!a.permits(Some(ip("198.51.100.1"))));
        assert!(!a.permits(None), "an unknown address is refused");
        assert!(IpAllowlist::default().permits(None), "no allowlist: anywhere");
        let child = IpAllowlist::parse(&["203.0.113.128/25", "203.0.0.0/16", "2001:db8:1::/48"]).unwrap();
        let wide: Vec<String> = child.beyond(&a).map(Cidr::to_string).collect();
        assert_eq!(wide, ["203.0.0.0/16"]);
        assert_eq!(child.beyond(&IpAllowlist::default()).count(), 0);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn any_cidr() -> impl Strategy<Value = Cidr> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Cidr::new(IpAddr::from(Ipv4Addr::from(a)), p).unwrap()),
            (any::<u128>(), 0u8..=128).prop_map(|(a, p)| Cidr::new(IpAddr::from(Ipv6Addr::from(a)), p).unwrap()),
        ]
    }

    fn bits(ip: IpAddr) -> (u128, u32) {
        match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_cases(2_000)))]

        /// Any text: parsing never panics, and what parses prints as a range that parses back to itself.
        #[test]
        fn any_text_never_panics(s in "[0-9a-fA-F:./+ x-]{0,48}") {
            if let Ok(c) = s.parse::<Cidr>() {
                prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
            }
            let _ = IpAllowlist::parse_text(&s);
        }

        /// `contains` agrees with comparing the leading `prefix` bits, and a range contains its network address.
        #[test]
        fn contains_agrees_with_bit_comparison(c in any_cidr(), other in any::<u128>()) {
            let (net, width) = bits(c.network());
            let addr = if width == 32 {
                IpAddr::from(Ipv4Addr::from(other as u32))
            } else {
                IpAddr::from(Ipv6Addr::from(other))
            };
            let (a, _) = bits(addr);
            let same = c.prefix() == 0 || (net ^ a) >> (width - u32::from(c.prefix())) == 0;
            prop_assert_eq!(c.contains(addr), same);
            prop_assert!(c.contains(c.network()));
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        }

        /// `is_within` means every address of the inner range is in the outer one (checked at its first address and
        /// through the prefix comparison).
        #[test]
        fn within_implies_contained(inner in any_cidr(), outer in any_cidr()) {
            if inner.is_within(&outer) {
                prop_assert!(outer.contains(inner.network()));
                prop_assert!(inner.prefix() >= outer.prefix());
            }
            prop_assert!(inner.is_within(&inner));
        }

        /// An allowlist's stored form reads back to the same allowlist.
        #[test]
        fn stored_form_round_trips(v in proptest::collection::vec(any_cidr(), 0..8)) {
            let text: Vec<String> = v.iter().map(Cidr::to_string).collect();
            let a = IpAllowlist::parse(&text).unwrap();
            prop_assert_eq!(IpAllowlist::from_stored(a.to_stored().as_deref()).unwrap(), a);
        }
    }
}
