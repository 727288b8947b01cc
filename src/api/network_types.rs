//! The Engine API's network JSON: request bodies, the `NetworkResource`
//! answer, and the `filters` of `GET /networks` and `POST /networks/prune`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

use netcontroller::controller::{AttachedEndpoint, NetworkCreate, PREDEFINED};
use netcontroller::ipam::IpamRequest;
use netcontroller::model::NetworkSpec;

use super::{Filters, FiltersError};

/// `POST /networks/create` body. Unknown fields are ignored, as dockerd does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    pub name: String,
    pub check_duplicate: Option<bool>,
    pub driver: Option<String>,
    pub scope: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_only: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Option<IpamBody>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    pub options: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamBody {
    pub driver: Option<String>,
    pub config: Option<Vec<IpamConfigBody>>,
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfigBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(rename = "IPRange", skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auxiliary_addresses: Option<BTreeMap<String, String>>,
}

/// Why a create body was refused; always a 400 except where noted.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Invalid(String),
}

impl CreateRequest {
    /// Checks the body and turns it into the controller's request.
    /// Deliberate differences from dockerd (documented in the README): one
    /// IPv4 pool per network, no IPv6, IPAM driver `default` only.
    pub fn into_controller(self) -> Result<NetworkCreate, CreateError> {
        let invalid = |m: String| CreateError::Invalid(m);
        if self.name.trim().is_empty() {
            return Err(invalid("network name is required".into()));
        }
        if self.ingress {
            return Err(invalid(
                "ingress networks are only supported in swarm mode".into(),
            ));
        }
        if self.config_only {
            return Err(invalid("config-only networks are not supported".into()));
        }
        if let Some(scope) = self.scope.as_deref() {
            if !scope.is_empty() && scope != "local" {
                return Err(invalid(format!(
                    "invalid scope {scope}: only \"local\" is supported"
                )));
            }
        }
        if self.enable_ipv6 == Some(true) {
            return Err(invalid("IPv6 networks are not supported by berthd".into()));
        }
        let mut ipam = None;
        if let Some(body) = self.ipam {
            if let Some(d) = body.driver.as_deref() {
                if !d.is_empty() && d != "default" {
                    return Err(invalid(format!("IPAM driver \"{d}\" is not supported")));
                }
            }
            let configs = body.config.unwrap_or_default();
            if configs.len() > 1 {
                return Err(invalid(
                    "only one IPv4 pool per network is supported".into(),
                ));
            }
            if let Some(c) = configs.into_iter().next() {
                ipam = Some(parse_ipam_config(c)?);
            }
        }
        let driver = match self.driver.as_deref() {
            None | Some("") => "bridge".to_string(),
            Some(d) => d.to_string(),
        };
        Ok(NetworkCreate {
            name: self.name,
            driver,
            ipam,
            internal: self.internal,
            attachable: self.attachable,
            enable_ipv6: false,
            options: self.options.unwrap_or_default(),
            labels: self.labels.unwrap_or_default(),
        })
    }
}

/// `what` and `s` lead the message, as in dockerd's
/// "invalid subnet X: invalid CIDR block notation".
fn parse_v4_net(what: &str, s: &str) -> Result<Ipv4Network, CreateError> {
    // ipnetwork accepts a bare address as a /32; dockerd wants the prefix.
    let parsed = if s.contains('/') {
        s.parse::<IpNetwork>().ok()
    } else {
        None
    };
    match parsed {
        Some(IpNetwork::V4(n)) => Ok(n),
        Some(IpNetwork::V6(_)) => Err(CreateError::Invalid(format!(
            "invalid {what} {s}: IPv6 is not supported"
        ))),
        None => Err(CreateError::Invalid(format!(
            "invalid {what} {s}: invalid CIDR block notation"
        ))),
    }
}

/// `what` names the address as dockerd does ("gateway", "auxiliary address r").
fn parse_v4_addr(what: &str, s: &str) -> Result<Ipv4Addr, CreateError> {
    match s.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Ok(a),
        Ok(std::net::IpAddr::V6(_)) => Err(CreateError::Invalid(format!(
            "invalid {what} {s}: IPv6 is not supported"
        ))),
        Err(_) => Err(CreateError::Invalid(format!(
            "invalid {what} {s}: invalid address"
        ))),
    }
}

fn parse_ipam_config(c: IpamConfigBody) -> Result<IpamRequest, CreateError> {
    let subnet = c
        .subnet
        .filter(|s| !s.is_empty())
        .map(|s| parse_v4_net("subnet", &s))
        .transpose()?;
    let ip_range = c
        .ip_range
        .filter(|s| !s.is_empty())
        .map(|s| parse_v4_net("ip-range", &s))
        .transpose()?;
    let gateway = c
        .gateway
        .filter(|s| !s.is_empty())
        .map(|s| parse_v4_addr("gateway", &s))
        .transpose()?;
    let mut aux = BTreeMap::new();
    for (k, v) in c.auxiliary_addresses.unwrap_or_default() {
        let address = v.parse().map_err(|_| {
            CreateError::Invalid(format!("invalid auxiliary address {k}: invalid address"))
        })?;
        aux.insert(k, address);
    }
    Ok(IpamRequest {
        subnet,
        gateway,
        ip_range,
        aux_addresses: aux,
    })
}

/// `NetworkResource`: what inspect and list answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkResource {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: &'static str,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: IpamOut,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigFrom,
    pub config_only: bool,
    pub containers: BTreeMap<String, EndpointResource>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamOut {
    pub driver: &'static str,
    pub options: Option<BTreeMap<String, String>>,
    pub config: Vec<IpamConfigBody>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigFrom {
    pub network: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointResource {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// Builds the answer; `containers` is empty for the list, as dockerd does.
pub fn network_resource(spec: &NetworkSpec, containers: &[AttachedEndpoint]) -> NetworkResource {
    let config = spec
        .ipv4
        .iter()
        .map(|p| IpamConfigBody {
            subnet: Some(p.subnet.to_string()),
            ip_range: p.ip_range.map(|r| r.to_string()),
            gateway: Some(p.gateway.to_string()),
            auxiliary_addresses: (!p.aux_addresses.is_empty()).then(|| {
                p.aux_addresses
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect()
            }),
        })
        .collect();
    NetworkResource {
        name: spec.name.clone(),
        id: spec.id.clone(),
        created: spec.created.clone(),
        scope: "local",
        driver: spec.driver.clone(),
        enable_ipv6: spec.enable_ipv6,
        ipam: IpamOut {
            driver: "default",
            // dockerd answers null for the predefined networks and {} for user ones.
            options: (!PREDEFINED.contains(&spec.name.as_str())).then(BTreeMap::new),
            config,
        },
        internal: spec.internal,
        attachable: spec.attachable,
        ingress: false,
        config_from: ConfigFrom {
            network: String::new(),
        },
        config_only: false,
        containers: containers
            .iter()
            .map(|a| {
                (
                    a.container_id.clone(),
                    EndpointResource {
                        name: a.endpoint.name.clone(),
                        endpoint_id: a.endpoint.id.clone(),
                        mac_address: if a.endpoint.ipv4.is_some() {
                            a.endpoint.mac.to_string()
                        } else {
                            String::new()
                        },
                        ipv4_address: a.endpoint.ipv4.map(|n| n.to_string()).unwrap_or_default(),
                        ipv6_address: String::new(),
                    },
                )
            })
            .collect(),
        options: spec.options.clone(),
        labels: spec.labels.clone(),
    }
}

const LIST_FILTERS: [&str; 7] = ["driver", "id", "label", "name", "scope", "type", "dangling"];

/// Refuses filters `GET /networks` does not know, with dockerd's messages.
pub fn check_list_filters(f: &Filters) -> Result<(), FiltersError> {
    f.validate(&LIST_FILTERS)?;
    for t in f.values("type") {
        if t != "custom" && t != "builtin" {
            return Err(FiltersError::Refused(format!(
                "invalid filter: 'type'='{t}'"
            )));
        }
    }
    match f.values("dangling").as_slice() {
        [] | ["0" | "1" | "false" | "true"] => Ok(()),
        [_] => Err(FiltersError::Refused(
            r#"invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#
                .into(),
        )),
        _ => Err(FiltersError::Refused(
            r#"got more than one value for filter key "dangling""#.into(),
        )),
    }
}

/// Whether a network passes the list filters (checked beforehand with
/// [`check_list_filters`]). `in_use` tells whether a container is attached.
pub fn matches_list_filters(spec: &NetworkSpec, f: &Filters, in_use: bool) -> bool {
    let builtin = PREDEFINED.contains(&spec.name.as_str());
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
        let vals = f.values(key);
        vals.is_empty() || vals.into_iter().any(pred)
    };
    let dangling_ok = match f.values("dangling").first() {
        // dockerd: dangling=true lists custom networks with no containers.
        Some(&("1" | "true")) => !builtin && !in_use,
        Some(_) => builtin || in_use,
        None => true,
    };
    f.exact_match("driver", &spec.driver)
        && f.regex_match("id", &spec.id)
        && f.regex_match("name", &spec.name)
        && any("scope", &|v| v == "local")
        && any("type", &|v| (v == "builtin") == builtin)
        && dangling_ok
        && f.match_labels("label", &spec.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, labels: &[(&str, &str)]) -> NetworkSpec {
        NetworkSpec {
            id: "abcdef0123456789".repeat(4),
            name: name.into(),
            driver: "bridge".into(),
            ipv4: vec![],
            internal: false,
            attachable: false,
            enable_ipv6: false,
            options: BTreeMap::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created: String::new(),
        }
    }

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
        Filters::parse(&serde_json::to_string(&map).unwrap()).unwrap()
    }

    #[test]
    fn name_filter_is_a_substring_match() {
        let s = spec("frontend", &[]);
        assert!(matches_list_filters(
            &s,
            &filters(&[("name", "front")]),
            false
        ));
        assert!(!matches_list_filters(
            &s,
            &filters(&[("name", "back")]),
            false
        ));
    }

    #[test]
    fn label_filters_all_must_match() {
        let s = spec("n", &[("env", "prod"), ("team", "a")]);
        assert!(matches_list_filters(
            &s,
            &filters(&[("label", "env=prod"), ("label", "team")]),
            false
        ));
        assert!(!matches_list_filters(
            &s,
            &filters(&[("label", "env=dev")]),
            false
        ));
    }

    #[test]
    fn type_and_dangling() {
        let b = spec("bridge", &[]);
        let c = spec("mine", &[]);
        let builtin = filters(&[("type", "builtin")]);
        assert!(matches_list_filters(&b, &builtin, false));
        assert!(!matches_list_filters(&c, &builtin, false));
        let dangling = filters(&[("dangling", "true")]);
        assert!(matches_list_filters(&c, &dangling, false));
        assert!(!matches_list_filters(&c, &dangling, true));
        assert!(!matches_list_filters(&b, &dangling, false));
    }

    #[test]
    fn unknown_filter_key_is_refused() {
        assert!(check_list_filters(&filters(&[("colour", "x")])).is_err());
        assert!(check_list_filters(&filters(&[("type", "odd")])).is_err());
        assert!(check_list_filters(&filters(&[("name", "x")])).is_ok());
    }

    #[test]
    fn create_body_defaults_to_bridge_and_parses_ipam() {
        let body: CreateRequest = serde_json::from_str(
            r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"10.9.0.0/24","Gateway":"10.9.0.1","IPRange":"10.9.0.128/25"}]}}"#,
        )
        .unwrap();
        let req = body.into_controller().unwrap();
        assert_eq!(req.driver, "bridge");
        let ipam = req.ipam.unwrap();
        assert_eq!(ipam.subnet.unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(ipam.gateway.unwrap().to_string(), "10.9.0.1");
        assert_eq!(ipam.ip_range.unwrap().to_string(), "10.9.0.128/25");
    }

    #[test]
    fn create_body_refusals() {
        for body in [
            r#"{"Name":""}"#,
            r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"10.9.0.0/33"}]}}"#,
            r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"fd00::/64"}]}}"#,
            r#"{"Name":"n","IPAM":{"Config":[{"Gateway":"300.1.1.1"}]}}"#,
            r#"{"Name":"n","Ingress":true}"#,
            r#"{"Name":"n","IPAM":{"Driver":"foo"}}"#,
        ] {
            let req: CreateRequest = serde_json::from_str(body).unwrap();
            assert!(req.into_controller().is_err(), "{body}");
        }
    }
}
