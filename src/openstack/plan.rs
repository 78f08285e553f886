//! What apply would refuse (`check`) and change (`plan`), from what `observe` read: pure.

use super::action::{CloudAction, Kind, Verb};
use super::cloud::CloudError;
use super::provider::{
    Desired, Observed, SERVER_GROUP_POLICY, keypair_name, role_slug, server_name, tag,
};

/// The security groups kubeforge makes, by suffix.
pub const SECURITY_GROUPS: [&str; 3] = ["common", "control-plane", "worker"];

/// Refuses what kubeforge would otherwise adopt although it is not the cluster's: run on what
/// `observe` read, by `plan` and before `ensure` creates anything.
pub fn check(d: &Desired<'_>, o: &Observed) -> Result<(), CloudError> {
    let name = d.name();
    let t = tag(name);
    if d.own_network()
        && let Some((id, false)) = &o.network
    {
        return Err(CloudError::Refused(format!(
            "network {name} ({id}) exists but is not kubeforge's (no tag {t}); name it in spec.openstack.network.name to use it, or rename it"
        )));
    }
    for (role, count) in d.counts() {
        let g = format!("{name}-{}", role_slug(role));
        if count > 0
            && let Some(sg) = o.server_groups.get(&g)
            && sg.policy != SERVER_GROUP_POLICY
        {
            return Err(CloudError::Refused(format!(
                "server group {g} ({}) exists with policy {}, not the {SERVER_GROUP_POLICY} kubeforge creates, so it is not kubeforge's; rename or delete it",
                sg.id,
                if sg.policy.is_empty() {
                    "unknown"
                } else {
                    &sg.policy
                }
            )));
        }
    }
    if d.octavia()
        && let Some(lb) = &o.load_balancer
        && !lb.ours
    {
        return Err(CloudError::Refused(format!(
            "load balancer {name}-api ({}) exists but is not kubeforge's (no tag {t}); rename or delete it, or use controlPlane.loadBalancer: local",
            lb.id
        )));
    }
    Ok(())
}

fn create_or_adopt(exists: bool) -> Verb {
    if exists { Verb::Adopt } else { Verb::Create }
}

/// The changes `ensure` would make, in its order.
pub fn plan(d: &Desired<'_>, o: &Observed) -> Vec<CloudAction> {
    let name = d.name();
    let mut out = Vec::new();
    let mut act = |verb, kind, n: String| out.push(CloudAction::new(verb, kind, n));
    act(
        create_or_adopt(o.keypair.is_some()),
        Kind::KeyPair,
        keypair_name(name),
    );
    if d.own_network() {
        act(
            create_or_adopt(o.network.is_some()),
            Kind::Network,
            name.to_string(),
        );
        act(
            create_or_adopt(o.subnet.is_some()),
            Kind::Subnet,
            name.to_string(),
        );
        act(
            create_or_adopt(o.router.is_some()),
            Kind::Router,
            name.to_string(),
        );
    } else {
        act(
            Verb::Use,
            Kind::Network,
            d.os.network.name.clone().unwrap_or_default(),
        );
    }
    for g in SECURITY_GROUPS {
        let n = format!("{name}-{g}");
        act(
            create_or_adopt(o.security_groups.contains_key(&n)),
            Kind::SecurityGroup,
            n,
        );
    }
    for (role, count) in d.counts() {
        if count == 0 {
            continue;
        }
        let g = format!("{name}-{}", role_slug(role));
        act(
            create_or_adopt(o.server_groups.contains_key(&g)),
            Kind::ServerGroup,
            g,
        );
        for i in 1..=count {
            let n = server_name(name, role, i);
            let verb = match o.servers.iter().find(|x| x.name == n) {
                Some(x) if x.failed_build => Verb::Replace,
                Some(_) => Verb::Adopt,
                None => Verb::Create,
            };
            act(verb, Kind::Server, n);
        }
    }
    for x in &o.servers {
        if x.index > d.count(x.role) {
            act(
                Verb::Delete,
                Kind::Server,
                format!("{} (after removing its node)", x.name),
            );
        }
    }
    if d.floating_ips() {
        act(Verb::Ensure, Kind::FloatingIps, "one per server".into());
    }
    if d.octavia() {
        act(
            create_or_adopt(o.our_load_balancer().is_some()),
            Kind::LoadBalancer,
            format!("{name}-api (TCP 6443, one member per control plane)"),
        );
    }
    out
}
