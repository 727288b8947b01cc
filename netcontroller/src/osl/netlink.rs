//! Netlink access to one network namespace: links, IPv4 addresses, routes.
//!
//! A netlink socket acts on the namespace it was opened in, whatever thread
//! later uses it. [`NetlinkHandle::for_netns`] therefore opens the socket on
//! the namespace worker, inside the namespace, and then drives it from the
//! caller's tokio runtime like any other socket.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::AddressFamily;
use nix::errno::Errno;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tracing::debug;

use super::error::{netlink_errno as errno_of, OslError};
use super::netns::{current_netns_label, enter_netns};
use super::worker;
use crate::model::MacAddr;

/// What the kernel says about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `bridge`, `veth`, ...; `None` for links without a kind (`lo`, physical NICs).
    pub kind: Option<String>,
    pub mtu: u32,
    /// Index of the bridge (or other master) the link is enslaved to.
    pub master: Option<u32>,
    pub mac: Option<MacAddr>,
    /// The administrative state (`ip link set up`), not the carrier.
    pub up: bool,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mtu: 0,
            master: None,
            mac: None,
            up: msg.header.flags.contains(LinkFlags::Up),
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Controller(master) => link.master = Some(*master),
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// A veth pair whose peer is created directly inside another namespace.
#[derive(Debug, Clone)]
pub struct VethPair<'a> {
    /// Name of the end that stays in the handle's namespace.
    pub host_name: &'a str,
    /// Bridge (or other master) index to enslave the host end to.
    pub host_master: Option<u32>,
    /// Name of the end created in the other namespace (`eth0`).
    pub peer_name: &'a str,
    pub peer_mac: Option<MacAddr>,
    /// MTU of both ends.
    pub mtu: u32,
}

/// Checks a link name the way the kernel's `dev_valid_name` does.
pub fn check_ifname(name: &str) -> Result<(), OslError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > 15 {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(OslError::Invalid {
            what: "interface name",
            value: name.to_string(),
            reason: reason.to_string(),
        }),
    }
}

/// A netlink socket bound to one network namespace. Cloning shares the socket;
/// the connection task ends when the last clone is dropped.
#[derive(Clone)]
pub struct NetlinkHandle {
    inner: rtnetlink::Handle,
    /// Where the socket acts, for error messages and logs.
    netns: Arc<str>,
    /// Held while a dump runs: the kernel refuses a second dump on a socket
    /// while one is in progress (EBUSY), and clones share the socket.
    dumping: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for NetlinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkHandle")
            .field("netns", &self.netns)
            .finish()
    }
}

impl NetlinkHandle {
    /// A handle on the calling thread's namespace. Must be called inside a
    /// tokio runtime, which drives the connection.
    pub fn current() -> Result<Self, OslError> {
        Self::connect(&runtime()?, current_netns_label())
    }

    /// A handle on the namespace bind-mounted at `path`.
    pub async fn for_netns(path: &Path) -> Result<Self, OslError> {
        let rt = runtime()?;
        let path = path.to_path_buf();
        worker::run_async(move || {
            enter_netns(&path)?;
            Self::connect(&rt, path.display().to_string())
        })
        .await
    }

    fn connect(rt: &tokio::runtime::Handle, netns: String) -> Result<Self, OslError> {
        // The socket registers with the runtime's reactor when created, so the
        // runtime must be entered on this (possibly foreign) thread.
        let _guard = rt.enter();
        let (conn, handle, unsolicited) = rtnetlink::new_connection()
            .map_err(|e| OslError::netns("open netlink socket in", netns.as_str(), e))?;
        // Without a receiver for unsolicited messages the connection ends as
        // soon as every handle is gone.
        drop(unsolicited);
        rt.spawn(conn);
        Ok(NetlinkHandle {
            inner: handle,
            netns: netns.into(),
            dumping: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Which namespace this handle acts on.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    fn err(&self, op: impl Into<String>, e: rtnetlink::Error) -> OslError {
        OslError::netlink(op, &self.netns, e)
    }

    /// The link named `name`, or `None` when there is none.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, OslError> {
        let mut replies = self.inner.link().get().match_name(name).execute();
        match replies.try_next().await {
            Ok(msg) => Ok(msg.as_ref().map(Link::from_message)),
            Err(e) if errno_of(&e) == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(self.err(format!("get link {name}"), e)),
        }
    }

    /// The link named `name`; [`OslError::LinkNotFound`] when there is none.
    pub async fn require_link(&self, name: &str) -> Result<Link, OslError> {
        self.link(name)
            .await?
            .ok_or_else(|| OslError::LinkNotFound {
                name: name.to_string(),
                netns: self.netns.to_string(),
            })
    }

    /// Every link in the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, OslError> {
        let _dump = self.dumping.lock().await;
        self.inner
            .link()
            .get()
            .execute()
            .map_ok(|msg| Link::from_message(&msg))
            .try_collect()
            .await
            .map_err(|e| self.err("list links", e))
    }

    /// Creates a bridge, up, with the given MTU and a fixed random MAC.
    /// Nothing is left behind on failure.
    pub async fn create_bridge(&self, name: &str, mtu: u32) -> Result<Link, OslError> {
        check_ifname(name)?;
        // An explicit MAC keeps the bridge from taking over the address of
        // its first port, which would change the gateway's MAC under the
        // containers already attached (dockerd sets one for the same reason).
        let msg = LinkBridge::new(name)
            .address(random_mac().0.to_vec())
            .up()
            .build();
        match self.inner.link().add(msg).execute().await {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(Errno::EEXIST) => {
                return Err(OslError::LinkExists {
                    name: name.to_string(),
                    netns: self.netns.to_string(),
                })
            }
            Err(e) => return Err(self.err(format!("create bridge {name}"), e)),
        }
        let mut link = self.require_link(name).await?;
        // Set after creation, not with it: only an MTU set on a live bridge
        // is kept; one given at creation is readjusted by the kernel to its
        // ports' and falls back to 1500 when the last port leaves.
        if link.mtu != mtu {
            if let Err(e) = self.set_mtu(link.index, mtu).await {
                let _ = self.delete_link(name).await;
                return Err(e);
            }
            link.mtu = mtu;
        }
        debug!(bridge = name, mtu, netns = %self.netns, "bridge created");
        Ok(link)
    }

    async fn set_link(&self, op: String, msg: LinkMessage) -> Result<(), OslError> {
        self.inner
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| self.err(op, e))
    }

    /// Sets a link administratively up.
    pub async fn set_up(&self, index: u32) -> Result<(), OslError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.set_link(format!("set link {index} up"), msg).await
    }

    /// Sets a link administratively down.
    pub async fn set_down(&self, index: u32) -> Result<(), OslError> {
        let msg = LinkUnspec::new_with_index(index).down().build();
        self.set_link(format!("set link {index} down"), msg).await
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), OslError> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link(format!("set mtu {mtu} on link {index}"), msg)
            .await
    }

    pub async fn set_mac(&self, index: u32, mac: MacAddr) -> Result<(), OslError> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.0.to_vec())
            .build();
        self.set_link(format!("set mac {mac} on link {index}"), msg)
            .await
    }

    /// Deletes the link named `name`. Returns false when there was none.
    /// Deleting one end of a veth pair deletes the other end too.
    pub async fn delete_link(&self, name: &str) -> Result<bool, OslError> {
        let msg = LinkUnspec::new_with_name(name).build();
        match self.inner.link().del_with_message(msg).execute().await {
            Ok(()) => {
                debug!(link = name, netns = %self.netns, "link deleted");
                Ok(true)
            }
            Err(e) if errno_of(&e) == Some(Errno::ENODEV) => Ok(false),
            Err(e) => Err(self.err(format!("delete link {name}"), e)),
        }
    }

    /// Creates a veth pair whose peer is made directly inside the namespace
    /// at `netns` with its final name, MAC and MTU: one request, instead of
    /// create + move + rename (the move alone costs ~17 ms). The host end is
    /// up and enslaved to `host_master` when given. The peer stays down (the
    /// kernel cannot open a veth before its pair exists: ENOTCONN); bring it
    /// up with a handle on its namespace once it is configured.
    pub async fn create_veth_into_netns(
        &self,
        pair: &VethPair<'_>,
        netns: &Path,
    ) -> Result<(), OslError> {
        check_ifname(pair.host_name)?;
        check_ifname(pair.peer_name)?;
        // The fd only has to live until the kernel has answered.
        let ns = File::open(netns).map_err(|e| OslError::netns("open", netns, e))?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::default()
            .name(pair.peer_name)
            .mtu(pair.mtu)
            .setns_by_fd(ns.as_raw_fd());
        if let Some(mac) = pair.peer_mac {
            peer = peer.address(mac.0.to_vec());
        }
        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(pair.host_name)
            .mtu(pair.mtu)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(master) = pair.host_master {
            host = host.controller(master);
        }
        self.inner
            .link()
            .add(host.build())
            .execute()
            .await
            .map_err(|e| {
                self.err(
                    format!(
                        "create veth {} with peer {} in {}",
                        pair.host_name,
                        pair.peer_name,
                        netns.display()
                    ),
                    e,
                )
            })?;
        drop(ns);
        debug!(host = pair.host_name, peer = pair.peer_name, netns = %netns.display(), "veth created");
        Ok(())
    }

    async fn ipv4_address_messages(
        &self,
        index: Option<u32>,
    ) -> Result<Vec<(Ipv4Network, AddressMessage)>, OslError> {
        let mut req = self.inner.address().get();
        if let Some(index) = index {
            req = req.set_link_index_filter(index);
        }
        let _dump = self.dumping.lock().await;
        let msgs: Vec<AddressMessage> = req
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list addresses", e))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| ipv4_of_address(&m).map(|net| (net, m)))
            .collect())
    }

    /// The IPv4 addresses (with prefix length) on link `index`.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Network>, OslError> {
        Ok(self
            .ipv4_address_messages(Some(index))
            .await?
            .into_iter()
            .map(|(net, _)| net)
            .collect())
    }

    /// Adds one IPv4 address to link `index`; an existing equal address is a conflict.
    pub async fn add_ipv4_address(&self, index: u32, addr: Ipv4Network) -> Result<(), OslError> {
        self.inner
            .address()
            .add(index, IpAddr::V4(addr.ip()), addr.prefix())
            .execute()
            .await
            .map_err(|e| self.err(format!("add address {addr} to link {index}"), e))
    }

    /// Makes link `index` carry exactly the IPv4 addresses in `want`: others
    /// are removed, missing ones added, none duplicated.
    pub async fn set_ipv4_addresses(
        &self,
        index: u32,
        want: &[Ipv4Network],
    ) -> Result<(), OslError> {
        let want: BTreeSet<Ipv4Network> = want.iter().copied().collect();
        let current = self.ipv4_address_messages(Some(index)).await?;
        if current.len() == want.len() && current.iter().all(|(net, _)| want.contains(net)) {
            return Ok(());
        }
        for (net, msg) in current.into_iter().filter(|(net, _)| !want.contains(net)) {
            match self.inner.address().del(msg).execute().await {
                Ok(()) => debug!(%net, index, netns = %self.netns, "address removed"),
                // Removing a primary address takes its secondaries with it.
                Err(e) if errno_of(&e) == Some(Errno::EADDRNOTAVAIL) => {}
                Err(e) => {
                    return Err(self.err(format!("remove address {net} from link {index}"), e))
                }
            }
        }
        // Listed again: a removed primary may have taken a wanted secondary along.
        let left: BTreeSet<Ipv4Network> = self.ipv4_addresses(index).await?.into_iter().collect();
        for net in want.difference(&left) {
            self.add_ipv4_address(index, *net).await?;
            debug!(%net, index, netns = %self.netns, "address added");
        }
        Ok(())
    }

    /// Adds the default route via `gateway` out of link `oif`.
    pub async fn add_default_route(&self, gateway: Ipv4Addr, oif: u32) -> Result<(), OslError> {
        // Protocol "boot" is what `ip route add` and dockerd use; `ip route`
        // then shows the plain "default via GW dev IF".
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(oif)
            .protocol(RouteProtocol::Boot)
            .build();
        self.inner
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| self.err(format!("add default route via {gateway}"), e))
    }

    /// The IPv4 networks this namespace already uses: the prefix of every
    /// address and of every unicast route except default routes. A new
    /// network's subnet must overlap none of them.
    pub async fn ipv4_networks_in_use(&self) -> Result<Vec<Ipv4Network>, OslError> {
        let mut used: BTreeSet<Ipv4Network> = BTreeSet::new();
        for (net, _) in self.ipv4_address_messages(None).await? {
            used.insert(normalize(net));
        }
        let _dump = self.dumping.lock().await;
        let routes: Vec<RouteMessage> = self
            .inner
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list routes", e))?;
        used.extend(routes.iter().filter_map(ipv4_route_destination));
        Ok(used.into_iter().collect())
    }
}

fn runtime() -> Result<tokio::runtime::Handle, OslError> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| OslError::Runtime(format!("netlink needs a tokio runtime: {e}")))
}

/// A locally administered unicast MAC.
fn random_mac() -> MacAddr {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    MacAddr(mac)
}

fn normalize(net: Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(net.network(), net.prefix()).unwrap_or(net)
}

fn ipv4_of_address(msg: &AddressMessage) -> Option<Ipv4Network> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS differs from it
    // only on point-to-point links, where it names the peer.
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
            AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(*ip),
            _ => {}
        }
    }
    Ipv4Network::new(local.or(address)?, msg.header.prefix_len).ok()
}

/// The kernel's `local` routing table (linux/rtnetlink.h), absent from the crate.
const RT_TABLE_LOCAL: u32 = 255;

/// The destination of a non-default unicast IPv4 route outside the `local`
/// table (whose entries mirror the addresses already counted).
fn ipv4_route_destination(msg: &RouteMessage) -> Option<Ipv4Network> {
    let h = &msg.header;
    if h.address_family != AddressFamily::Inet
        || h.kind != RouteType::Unicast
        || h.destination_prefix_length == 0
    {
        return None;
    }
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    if table == RT_TABLE_LOCAL {
        return None;
    }
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Ipv4Network::new(*ip, h.destination_prefix_length)
                .ok()
                .map(normalize)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames_follow_kernel_rules() {
        for ok in ["eth0", "br-0123456789ab", "docker0", "a"] {
            assert!(check_ifname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "br-0123456789abc", ".", "..", "a/b", "a:b", "a b"] {
            assert!(check_ifname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_mac_is_local_unicast() {
        for _ in 0..64 {
            let mac = random_mac();
            assert_eq!(mac.0[0] & 0x03, 0x02);
        }
    }
}
