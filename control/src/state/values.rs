//! Scalar values of the cluster-state schema that have a textual form of their own: MAC addresses,
//! port ranges, the schema version and the "address or CIDR" of an allowed address pair.
//!
//! Owns: parsing these values from text (`FromStr`, used by `Deserialize`) and printing them back
//! (`Display`, used by `Serialize`). A `PortRange` is valid by construction (`1 <= first <= last`); a `MacAddr` is any
//! six octets: whether it may be used on a pod is a semantic question answered by `validate`.
//! Nothing here panics on any input.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use thiserror::Error;

/// A value of the schema that does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValueError {
    #[error("invalid MAC address {text:?}: expected six hex octets like \"02:00:0a:f4:01:02\"")]
    Mac { text: String },
    #[error("invalid port range {text:?}: expected \"N\" or \"N-M\"")]
    PortRangeSyntax { text: String },
    #[error("invalid port range {text:?}: ports are 1 to 65535")]
    PortOutOfRange { text: String },
    #[error("invalid port range {text:?}: first port is greater than last port")]
    PortRangeReversed { text: String },
    #[error("invalid IPv4 address or CIDR {text:?}")]
    AddressOrCidr { text: String },
    #[error("unsupported schema version {found}: this ctpath reads version 1")]
    UnsupportedVersion { found: u64 },
}

/// An Ethernet MAC address, written `02:00:0a:f4:01:02` (hex digits in either case).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(self) -> bool {
        self.0 == [0xff; 6]
    }

    /// The group bit (least significant bit of the first octet) is set; broadcast included.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// `00:00:00:00:00:00`.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ValueError::Mac {
            text: text.to_owned(),
        };
        let mut octets = [0u8; 6];
        let mut groups = text.split(':');
        for octet in &mut octets {
            let group = groups.next().ok_or_else(invalid)?;
            if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            *octet = u8::from_str_radix(group, 16).map_err(|_| invalid())?;
        }
        if groups.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MacVisitor;
        impl Visitor<'_> for MacVisitor {
            type Value = MacAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MAC address like \"02:00:0a:f4:01:02\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<MacAddr, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(MacVisitor)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An inclusive range of TCP or UDP ports, written `"N"` or `"N-M"`; `1 <= first <= last`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The first port of the range.
    pub fn first(self) -> u16 {
        self.first
    }

    /// The last port of the range (equal to `first` for a single port).
    pub fn last(self) -> u16 {
        self.last
    }
}

impl FromStr for PortRange {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let port = |digits: &str| -> Result<u16, ValueError> {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ValueError::PortRangeSyntax {
                    text: text.to_owned(),
                });
            }
            match digits.parse::<u16>() {
                Ok(port) if port != 0 => Ok(port),
                _ => Err(ValueError::PortOutOfRange {
                    text: text.to_owned(),
                }),
            }
        };
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => {
                let single = port(text)?;
                (single, single)
            }
        };
        if first > last {
            return Err(ValueError::PortRangeReversed {
                text: text.to_owned(),
            });
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl fmt::Debug for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortRange({self})")
    }
}

/// Accepts the contract's quoted form (`"2152"`, `"1000-2000"`) and, for a single port, a plain
/// YAML integer (`ports: 2152`), which is what people write.
impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortRangeVisitor;
        impl Visitor<'_> for PortRangeVisitor {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port range \"N\" or \"N-M\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<PortRange, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<PortRange, E> {
                self.visit_str(&number.to_string())
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<PortRange, E> {
                self.visit_str(&number.to_string())
            }
        }
        deserializer.deserialize_any(PortRangeVisitor)
    }
}

/// Written in the contract's quoted form (`"2152"`, `"1000-2000"`).
impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The version of the cluster-state schema. Only version 1 exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaVersion {
    V1,
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;
        impl Visitor<'_> for VersionVisitor {
            type Value = SchemaVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("schema version 1")
            }
            fn visit_u64<E: de::Error>(self, found: u64) -> Result<SchemaVersion, E> {
                match found {
                    1 => Ok(SchemaVersion::V1),
                    found => Err(E::custom(ValueError::UnsupportedVersion { found })),
                }
            }
        }
        deserializer.deserialize_u64(VersionVisitor)
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SchemaVersion::V1 => serializer.serialize_u64(1),
        }
    }
}

/// Writes an allowed-address-pair `ip` as it is read: a /32 as a plain address, anything else
/// as a CIDR.
pub(super) fn serialize_address_or_cidr<S: Serializer>(
    net: &Ipv4Net,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if net.prefix_len() == 32 {
        serializer.collect_str(&net.addr())
    } else {
        serializer.collect_str(net)
    }
}

/// Parses an allowed-address-pair `ip`: a plain address (`10.244.1.100`, taken as a /32) or a
/// CIDR (`10.244.1.0/24`, kept as written, host bits included, as OpenStack does).
pub(super) fn deserialize_address_or_cidr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Ipv4Net, D::Error> {
    struct AddressOrCidrVisitor;
    impl Visitor<'_> for AddressOrCidrVisitor {
        type Value = Ipv4Net;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IPv4 address or CIDR")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Ipv4Net, E> {
            parse_address_or_cidr(text).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(AddressOrCidrVisitor)
}

fn parse_address_or_cidr(text: &str) -> Result<Ipv4Net, ValueError> {
    let parsed = if text.contains('/') {
        text.parse::<Ipv4Net>().ok()
    } else {
        text.parse::<Ipv4Addr>().ok().map(Ipv4Net::from)
    };
    parsed.ok_or_else(|| ValueError::AddressOrCidr {
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn mac_parses_either_case_and_prints_lowercase() {
        let mac: MacAddr = "02:00:0A:f4:01:02".parse().unwrap();
        assert_eq!(mac, MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]));
        assert_eq!(mac.to_string(), "02:00:0a:f4:01:02");
    }

    #[test]
    fn mac_rejects_malformed_text() {
        for text in [
            "",
            "02:00:0a:f4:01",
            "02:00:0a:f4:01:02:03",
            "02-00-0a-f4-01-02",
            "2:00:0a:f4:01:02",
            "02:00:0a:f4:01:0g",
            "+2:00:0a:f4:01:02",
        ] {
            assert_eq!(
                text.parse::<MacAddr>(),
                Err(ValueError::Mac {
                    text: text.to_owned()
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn mac_classifies_group_broadcast_and_zero_addresses() {
        let parse = |text: &str| text.parse::<MacAddr>().unwrap();
        assert!(parse("01:00:5e:00:00:01").is_multicast());
        assert!(!parse("02:00:0a:f4:01:02").is_multicast());
        assert!(parse("ff:ff:ff:ff:ff:ff").is_broadcast());
        assert!(parse("ff:ff:ff:ff:ff:ff").is_multicast());
        assert!(parse("00:00:00:00:00:00").is_zero());
        assert!(!parse("02:00:0a:f4:01:02").is_zero());
    }

    #[test]
    fn port_range_parses_single_ports_and_ranges() {
        let single: PortRange = "2152".parse().unwrap();
        assert_eq!((single.first(), single.last()), (2152, 2152));
        assert_eq!(single.to_string(), "2152");
        let range: PortRange = "1-65535".parse().unwrap();
        assert_eq!((range.first(), range.last()), (1, 65535));
        assert_eq!(range.to_string(), "1-65535");
    }

    #[test]
    fn port_range_rejects_bad_text() {
        let text = |t: &str| t.to_owned();
        assert_eq!(
            "".parse::<PortRange>(),
            Err(ValueError::PortRangeSyntax { text: text("") })
        );
        assert_eq!(
            "80-".parse::<PortRange>(),
            Err(ValueError::PortRangeSyntax { text: text("80-") })
        );
        assert_eq!(
            "1-2-3".parse::<PortRange>(),
            Err(ValueError::PortRangeSyntax {
                text: text("1-2-3")
            })
        );
        assert_eq!(
            "+80".parse::<PortRange>(),
            Err(ValueError::PortRangeSyntax { text: text("+80") })
        );
        assert_eq!(
            "0".parse::<PortRange>(),
            Err(ValueError::PortOutOfRange { text: text("0") })
        );
        assert_eq!(
            "1-65536".parse::<PortRange>(),
            Err(ValueError::PortOutOfRange {
                text: text("1-65536")
            })
        );
        assert_eq!(
            "2000-1000".parse::<PortRange>(),
            Err(ValueError::PortRangeReversed {
                text: text("2000-1000")
            })
        );
    }

    #[test]
    fn address_or_cidr_takes_a_plain_address_as_a_slash_32() {
        assert_eq!(
            parse_address_or_cidr("10.244.1.100"),
            Ok("10.244.1.100/32".parse().unwrap())
        );
        assert_eq!(
            parse_address_or_cidr("10.244.1.7/24"),
            Ok("10.244.1.7/24".parse().unwrap())
        );
        assert_eq!(
            parse_address_or_cidr("10.244.1/24"),
            Err(ValueError::AddressOrCidr {
                text: "10.244.1/24".to_owned()
            })
        );
    }

    proptest! {
        #[test]
        fn mac_text_parses_back(octets in any::<[u8; 6]>()) {
            let mac = MacAddr(octets);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
        }

        #[test]
        fn port_range_is_valid_whenever_it_parses(text in "[0-9-]{0,12}") {
            if let Ok(range) = text.parse::<PortRange>() {
                prop_assert!(1 <= range.first() && range.first() <= range.last());
                prop_assert_eq!(range.to_string().parse::<PortRange>(), Ok(range));
            }
        }
    }
}
