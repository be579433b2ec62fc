//! Address ranges (`10.0.0.0/8`, `fd00::/8`, or one address) for `trusted_proxies`: parsed once at start, checked
//! against the peer of every connection, so `contains` is a few integer operations.

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
    #[error("`{0}` is not an IP address (expected e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8)")]
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
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

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
        assert!(c("192.168.1.77/24").contains(ip("192.168.1.1")), "host bits are ignored");
        assert_eq!(c("192.168.1.77/24").to_string(), "192.168.1.0/24");
        assert!(c("203.0.113.9").contains(ip("203.0.113.9")));
        assert!(!c("203.0.113.9").contains(ip("203.0.113.8")));
        assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")), "an IPv4 range holds no IPv6 address");
        assert!(c("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!c("fd00::/8").contains(ip("fe80::1")));
        assert!(c("::/0").contains(ip("2001:db8::1")));
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
            ("10.0.0.0/x", "from 0 to 32"),
            ("::/129", "from 0 to 128"),
            ("10.0.0.0/8/8", "from 0 to 32"),
        ] {
            let e = s.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    /// Property: for random networks and addresses, `contains` agrees with comparing the leading `prefix` bits, and
    /// a range always contains its own network address and its printed form parses back to itself.
    #[test]
    fn contains_agrees_with_bit_comparison_for_random_ranges() {
        let mut rng = rand::thread_rng();
        for _ in 0..20_000 {
            let (a, b, prefix, v6) = (rng.gen::<u128>(), rng.gen::<u128>(), rng.gen_range(0..=128u8), rng.gen());
            let (net, addr, prefix, bits) = if v6 {
                (IpAddr::from(Ipv6Addr::from(a)), IpAddr::from(Ipv6Addr::from(b)), prefix, 128)
            } else {
                (IpAddr::from(Ipv4Addr::from(a as u32)), IpAddr::from(Ipv4Addr::from(b as u32)), prefix % 33, 32)
            };
            // Half the time, make `addr` share the network's first `prefix` bits.
            let addr = if rng.gen() { share_prefix(net, addr, prefix) } else { addr };
            let cidr = Cidr::new(net, prefix).unwrap();
            let (x, y) = (to_bits(net), to_bits(addr));
            let same = prefix == 0 || (x ^ y) >> (bits - u32::from(prefix)) == 0;
            assert_eq!(cidr.contains(addr), same, "{cidr} {addr}");
            assert!(cidr.contains(net));
            assert_eq!(cidr.to_string().parse::<Cidr>().unwrap(), cidr);
        }
    }

    fn to_bits(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn share_prefix(net: IpAddr, addr: IpAddr, prefix: u8) -> IpAddr {
        match (net, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from(Ipv4Addr::from((u32::from(n) & m) | (u32::from(a) & !m)))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from(Ipv6Addr::from((u128::from(n) & m) | (u128::from(a) & !m)))
            }
            _ => addr,
        }
    }

    /// Property: arbitrary text never panics the parser; what parses prints as a range that parses back.
    #[test]
    fn random_text_never_panics() {
        let mut rng = rand::thread_rng();
        let alphabet: Vec<char> = "0123456789abcdef:./+- x".chars().collect();
        for _ in 0..20_000 {
            let len = rng.gen_range(0..24);
            let s: String = (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
            if let Ok(c) = s.parse::<Cidr>() {
                assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c, "{s:?}");
            }
        }
    }
}
