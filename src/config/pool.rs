//! Default address pools (`--default-address-pool base=CIDR,size=N`).

use std::fmt;

use ipnetwork::Ipv4Network;
use serde::Deserialize;

/// A pool networks take their subnets from: `base` cut into `/size` subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    /// Always a network address (host bits cleared).
    pub base: Ipv4Network,
    pub size: u8,
}

/// A pool as written, before validation: daemon.json's
/// `{"base": "...", "size": N}` or the flag's `base=...,size=N`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub base: String,
    pub size: u32,
}

impl PoolSpec {
    /// Parses the flag form: comma-separated `key=value`, keys `base` and
    /// `size` (case-insensitive, as dockerd), both required.
    pub fn parse_flag(spec: &str) -> Result<PoolSpec, String> {
        let mut base = None;
        let mut size = None;
        for field in spec.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {field:?}"))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "base" => base = Some(value.trim().to_string()),
                "size" => {
                    size = Some(
                        value
                            .trim()
                            .parse::<u32>()
                            .map_err(|_| format!("size {value:?} is not a number"))?,
                    )
                }
                other => return Err(format!("unexpected key {other:?}")),
            }
        }
        Ok(PoolSpec {
            base: base.ok_or("base=CIDR is missing")?,
            size: size.ok_or("size=N is missing")?,
        })
    }
}

impl fmt::Display for PoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "base={},size={}", self.base, self.size)
    }
}

impl TryFrom<&PoolSpec> for AddressPool {
    type Error = String;

    fn try_from(spec: &PoolSpec) -> Result<AddressPool, String> {
        if !spec.base.contains('/') {
            return Err(format!("base {:?} has no /prefix", spec.base));
        }
        let base: Ipv4Network = spec
            .base
            .parse()
            .map_err(|e| format!("base {:?}: {e}", spec.base))?;
        let size = u8::try_from(spec.size)
            .ok()
            .filter(|s| (base.prefix()..=32).contains(s))
            .ok_or_else(|| {
                format!(
                    "size {} must be between the base's prefix {} and 32",
                    spec.size,
                    base.prefix()
                )
            })?;
        // Host bits are cleared, as Go's net.ParseCIDR does for dockerd.
        let base = Ipv4Network::new(base.network(), base.prefix()).map_err(|e| e.to_string())?;
        Ok(AddressPool { base, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(flag: &str) -> Result<AddressPool, String> {
        AddressPool::try_from(&PoolSpec::parse_flag(flag)?)
    }

    #[test]
    fn parses_flag_form() {
        let p = pool("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!(p.base, "10.10.0.0/16".parse().unwrap());
        assert_eq!(p.size, 24);
        assert_eq!(pool("SIZE=20,Base=172.80.0.0/12").unwrap().size, 20);
    }

    #[test]
    fn clears_host_bits() {
        assert_eq!(
            pool("base=10.10.3.4/16,size=24").unwrap().base,
            "10.10.0.0/16".parse().unwrap()
        );
    }

    #[test]
    fn refuses_malformed_specs() {
        for bad in [
            "base=10.0.0.0/8",
            "size=24",
            "base=10.0.0.0/8,size=x",
            "base=10.0.0.0/8,size=7",
            "base=10.0.0.0/8,size=33",
            "base=10.0.0.0,size=24",
            "base=10.0.0.0/40,size=24",
            "base=nonsense/8,size=24",
            "base=10.0.0.0/8,size=24,color=red",
            "10.0.0.0/8",
        ] {
            assert!(pool(bad).is_err(), "{bad} accepted");
        }
    }
}
