//! The bridge driver's packet filtering: netcontroller's iptables
//! programming, fed from the driver's parsed options.

use std::net::Ipv4Addr;
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use netcontroller::driver::{DriverError, DriverResult};
use netcontroller::firewall::{BridgeRules, Firewall, FirewallError, PortRules};
use netcontroller::model::{NetworkSpec, PortBinding};

use super::{BridgeFirewall, BridgeNetwork, BridgeOptions};

/// A firewall call queued for the worker thread.
type Job = Box<dyn FnOnce(&Firewall) + Send>;

/// iptables rules for bridge networks and their published ports.
///
/// Each call runs `iptables-save`/`iptables-restore` (one batch, ~5-10 ms)
/// on one worker thread of its own: never on a runtime worker, where it
/// would stall every other request for that long, and not on the blocking
/// pool, whose threads need not be in the daemon's network namespace (the
/// worker is spawned by the thread that calls [`IptablesFirewall::new`] and
/// inherits its namespace; tests run the driver inside namespaces of theirs).
pub struct IptablesFirewall {
    fw: Arc<Firewall>,
    jobs: mpsc::Sender<Job>,
}

impl IptablesFirewall {
    /// Installs the base chains and jumps (idempotent), starts the worker
    /// and returns the firewall.
    pub fn new(fw: Firewall) -> Result<Self, FirewallError> {
        fw.setup_base()?;
        let fw = Arc::new(fw);
        let (jobs, queue) = mpsc::channel::<Job>();
        let worker = fw.clone();
        std::thread::Builder::new()
            .name("firewall".into())
            .spawn(move || {
                for job in queue {
                    job(&worker);
                }
            })
            .map_err(|source| FirewallError::Spawn {
                program: "the firewall thread",
                source,
            })?;
        Ok(IptablesFirewall { fw, jobs })
    }

    pub fn firewall(&self) -> &Firewall {
        &self.fw
    }

    /// Runs `call` on the worker thread and waits for it without blocking
    /// the runtime.
    async fn run<F>(&self, context: &'static str, call: F) -> DriverResult<()>
    where
        F: FnOnce(&Firewall) -> Result<(), FirewallError> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |fw| {
            let _ = done.send(call(fw));
        });
        self.jobs
            .send(job)
            .map_err(|_| DriverError::system(context, "the firewall thread is gone"))?;
        result
            .await
            .map_err(|_| DriverError::system(context, "the firewall thread is gone"))?
            .map_err(|e| fw_error(context, e))
    }
}

fn rules(net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<BridgeRules> {
    bridge_rules(net, &bridge.options)
}

/// The firewall's view of a bridge network with its parsed options.
pub fn bridge_rules(net: &NetworkSpec, options: &BridgeOptions) -> DriverResult<BridgeRules> {
    let pool = net.ipv4.first().ok_or_else(|| DriverError::InvalidOption {
        key: "ipam".into(),
        reason: "a bridge network needs an IPv4 subnet".into(),
    })?;
    Ok(BridgeRules {
        bridge: options.bridge_name.clone(),
        subnet: pool.subnet,
        icc: options.enable_icc,
        masquerade: options.enable_ip_masquerade,
        internal: net.internal,
    })
}

fn fw_error(context: &str, e: FirewallError) -> DriverError {
    DriverError::system(context.to_string(), e)
}

#[async_trait]
impl BridgeFirewall for IptablesFirewall {
    async fn network_up(&self, net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()> {
        let rules = rules(net, bridge)?;
        self.run("adding the network's iptables rules", move |fw| {
            fw.add_network(&rules)
        })
        .await
    }

    async fn network_down(&self, net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()> {
        let rules = rules(net, bridge)?;
        self.run("removing the network's iptables rules", move |fw| {
            fw.remove_network(&rules)
        })
        .await
    }

    async fn ports_up(
        &self,
        bridge: &BridgeNetwork,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        let rules = port_rules(bridge, container_ip, bindings);
        self.run("adding port rules", move |fw| fw.add_ports(&rules))
            .await
    }

    async fn ports_down(
        &self,
        bridge: &BridgeNetwork,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        let rules = port_rules(bridge, container_ip, bindings);
        self.run("removing port rules", move |fw| fw.remove_ports(&rules))
            .await
    }
}

fn port_rules(
    bridge: &BridgeNetwork,
    container_ip: Ipv4Addr,
    bindings: &[PortBinding],
) -> PortRules {
    PortRules {
        bridge: bridge.options.bridge_name.clone(),
        container_ip,
        bindings: bindings.to_vec(),
    }
}
