//! The pure parts of the provider (observe's reading of the lists, check, plan, teardown, and
//! the choices ensure makes) on responses recorded from the lab's real Nova, Neutron, Glance
//! and Octavia (src/openstack/fixtures, recorded for a cluster `fx` made by `apply
//! --cloud-only`: 1 control plane on m1.tiny, 2 workers on m1.small, floating IPs, Octavia),
//! plus namesakes that are not kubeforge's (`fy`: an untagged network and load balancer, a
//! server group with policy anti-affinity) and a server whose build failed (`fz`, a flavor no
//! host can hold).

use super::action::{CloudAction, Kind, Verb};
use super::api;
use super::cloud::CloudError;
use super::ensure::{pick_external_network, pick_flavors, pick_image};
use super::observe::{Listings, build, server_addresses};
use super::provider::{Desired, Observed, ServerInfo, hosts};
use super::{plan, teardown};
use crate::inventory::Loaded;
use crate::model::Role;
use std::path::Path;

macro_rules! fixture {
    ($t:ty, $f:literal) => {
        serde_json::from_str::<$t>(include_str!(concat!("fixtures/", $f, ".json")))
            .expect(concat!("fixture ", $f))
    };
}

/// An inventory of cluster `name` (`extra` goes under spec.openstack).
fn loaded(name: &str, lb: &str, cps: u32, workers: u32, extra: &str) -> Loaded {
    let text = format!(
        "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}}}\nspec:\n  kubernetes: {{version: 1.34.1}}\n  controlPlane: {{loadBalancer: {lb}}}\n  ssh: {{user: ubuntu, keyPath: /k/id}}\n  openstack:\n    cloud: oslab\n    image: tiny\n    controlPlane: {{count: {cps}, flavor: m1.tiny}}\n    workers: {{count: {workers}, flavor: m1.small}}\n{extra}"
    );
    crate::inventory::load_str(Path::new("t.yaml"), &text, Path::new("/"), &|_| None)
        .unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn with<T>(l: &Loaded, f: impl FnOnce(&Desired<'_>) -> T) -> T {
    f(&Desired {
        cluster: &l.cluster,
        os: l.inventory.spec.openstack.as_ref().unwrap(),
    })
}

/// The cluster fx as the lab answered for it.
fn fx_listings() -> Listings {
    Listings {
        keypair: Some(fixture!(api::KeypairDoc, "keypair").keypair),
        networks: fixture!(api::Networks, "networks").networks,
        subnets: fixture!(api::Subnets, "subnets").subnets,
        routers: fixture!(api::Routers, "routers").routers,
        security_groups: fixture!(api::SecurityGroups, "security_groups").security_groups,
        server_groups: fixture!(api::ServerGroups, "server_groups").server_groups,
        servers: fixture!(api::Servers, "servers").servers,
        floating_ips: fixture!(api::FloatingIps, "floating_ips").floatingips,
        load_balancers: Some(fixture!(api::LoadBalancers, "load_balancers").loadbalancers),
    }
}

const FX_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3KL8pI18rJbkOODs3fDDB+NeENKc+/d4KJUOXVyq77 me@host";

fn fx(cps: u32, workers: u32) -> Loaded {
    loaded("fx", "octavia", cps, workers, "    floatingIps: true\n")
}

fn observed_fx() -> Observed {
    let l = fx(1, 2);
    with(&l, |d| build(d, &fx_listings()))
}

fn verbs(actions: &[CloudAction]) -> Vec<String> {
    actions.iter().map(|a| a.to_string()).collect()
}

#[test]
fn observe_reads_the_recorded_cluster() {
    let o = observed_fx();
    let net = fixture!(api::Networks, "networks").networks[0].id.clone();
    assert_eq!(o.network, Some((net, true)));
    assert_eq!(
        o.subnet.as_deref(),
        Some(fixture!(api::Subnets, "subnets").subnets[0].id.as_str())
    );
    assert!(o.router.is_some());
    assert_eq!(
        o.security_groups.keys().collect::<Vec<_>>(),
        ["fx-common", "fx-control-plane", "fx-worker"]
    );
    // the namesake fy-worker is no group of fx's
    assert_eq!(
        o.server_groups.keys().collect::<Vec<_>>(),
        ["fx-control-plane", "fx-worker"]
    );
    assert_eq!(o.server_groups["fx-worker"].members.len(), 2);
    assert_eq!(
        o.keypair.as_deref().and_then(|k| k.split(' ').nth(1)),
        FX_KEY.split(' ').nth(1)
    );
    // sorted by role and index, whatever Nova's order; fixed and floating addresses read apart
    type Row<'a> = (
        &'a str,
        Role,
        u32,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        bool,
    );
    let s: Vec<Row> = o
        .servers
        .iter()
        .map(|x| {
            (
                x.name.as_str(),
                x.role,
                x.index,
                x.status.as_str(),
                x.fixed_ip.as_deref(),
                x.floating_ip.as_deref(),
                x.failed_build,
            )
        })
        .collect();
    assert_eq!(
        s,
        [
            (
                "fx-control-plane-1",
                Role::ControlPlane,
                1,
                "ACTIVE",
                Some("10.77.0.44"),
                Some("203.0.113.124"),
                false
            ),
            (
                "fx-worker-1",
                Role::Worker,
                1,
                "ACTIVE",
                Some("10.77.0.183"),
                Some("203.0.113.195"),
                false
            ),
            (
                "fx-worker-2",
                Role::Worker,
                2,
                "ACTIVE",
                Some("10.77.0.19"),
                Some("203.0.113.67"),
                false
            ),
        ]
    );
    let mut ips: Vec<&str> = o.floating_ips.iter().map(|(_, ip)| ip.as_str()).collect();
    ips.sort();
    assert_eq!(ips, ["203.0.113.124", "203.0.113.195", "203.0.113.67"]);
    let lb = o.our_load_balancer().expect("fx-api is tagged");
    assert_eq!(lb.vip, "198.51.100.1");
}

#[test]
fn observe_takes_a_tagged_network_over_an_untagged_namesake_and_reads_a_failed_build() {
    let fy = loaded("fy", "octavia", 1, 1, "");
    let mut l = Listings {
        networks: fixture!(api::Networks, "foreign_networks").networks,
        server_groups: fixture!(api::ServerGroups, "server_groups").server_groups,
        load_balancers: Some(fixture!(api::LoadBalancers, "foreign_load_balancers").loadbalancers),
        ..Listings::default()
    };
    let o = with(&fy, |d| build(d, &l));
    let foreign = l.networks[0].id.clone();
    assert_eq!(o.network, Some((foreign.clone(), false)));
    assert_eq!(o.server_groups["fy-worker"].policy, "anti-affinity");
    assert!(o.load_balancer.as_ref().is_some_and(|lb| !lb.ours));
    assert!(o.our_load_balancer().is_none());
    // a tagged namesake (kubeforge's) listed after the foreign one is the one taken
    let mut ours = l.networks[0].clone();
    ours.id = "ours".into();
    ours.tags = vec!["kubeforge-cluster-fy".into()];
    l.networks.push(ours);
    assert_eq!(
        with(&fy, |d| build(d, &l)).network,
        Some(("ours".into(), true))
    );

    // a server that never launched (ERROR, launched_at null) is a failed build
    let fz = loaded("fz", "local", 1, 0, "    floatingIps: false\n");
    let l = Listings {
        servers: fixture!(api::Servers, "failed_servers").servers,
        ..Listings::default()
    };
    let o = with(&fz, |d| build(d, &l));
    assert_eq!(o.servers.len(), 1);
    assert!(o.servers[0].failed_build && o.servers[0].status == "ERROR");
    assert_eq!(o.servers[0].fixed_ip, None);
    // servers not named like the cluster's are not its servers, even tagged
    let other = loaded("other", "local", 1, 0, "");
    assert!(with(&other, |d| build(d, &l)).servers.is_empty());
}

#[test]
fn server_addresses_prefer_ipv4_and_read_floating_apart() {
    let s: api::Server = serde_json::from_value(serde_json::json!({
        "addresses": {"net": [
            {"version": 6, "addr": "fd00::5", "OS-EXT-IPS:type": "fixed"},
            {"version": 4, "addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"},
            {"version": 4, "addr": "203.0.113.9", "OS-EXT-IPS:type": "floating"}]},
        "OS-SRV-USG:launched_at": null, "fault": null, "tags": null
    }))
    .unwrap();
    // the first fixed address is kept, whichever its version (as observe always read them)
    assert_eq!(
        server_addresses(&s),
        (Some("fd00::5".into()), Some("203.0.113.9".into()))
    );
    // while waiting for ACTIVE, only an IPv4 fixed address counts
    let mut x = ServerInfo {
        id: "i".into(),
        name: "fx-worker-1".into(),
        role: Role::Worker,
        index: 1,
        status: "BUILD".into(),
        fixed_ip: None,
        floating_ip: None,
        failed_build: false,
    };
    super::ensure::servers::update_from(&mut x, &s).unwrap();
    assert_eq!(x.fixed_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(x.floating_ip.as_deref(), Some("203.0.113.9"));
    // a server in ERROR is reported with Nova's fault, as recorded
    let failed = fixture!(api::ServerDoc, "failed_server").server;
    let err = super::ensure::servers::update_from(&mut x, &failed).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server fx-worker-1 went to ERROR: No valid host was found. (the next apply deletes and recreates a server that never launched; one that ran is left for you to inspect)"
    );
}

#[test]
fn check_refuses_namesakes_that_are_not_kubeforges() {
    // nothing to refuse for the cluster kubeforge made
    with(&fx(1, 2), |d| plan::check(d, &observed_fx())).unwrap();

    let fy = loaded("fy", "octavia", 1, 1, "");
    let foreign = fixture!(api::Networks, "foreign_networks").networks;
    let groups = fixture!(api::ServerGroups, "server_groups").server_groups;
    let lbs = fixture!(api::LoadBalancers, "foreign_load_balancers").loadbalancers;
    let refused = |l: &Listings, d: &Loaded| match with(d, |d| plan::check(d, &build(d, l))) {
        Err(CloudError::Refused(m)) => m,
        other => panic!("not refused: {other:?}"),
    };
    // an untagged network of the cluster's name
    let l = Listings {
        networks: foreign.clone(),
        ..Listings::default()
    };
    let m = refused(&l, &fy);
    assert!(
        m.starts_with(&format!("network fy ({}) exists but is not kubeforge's (no tag kubeforge-cluster-fy); name it in spec.openstack.network.name", foreign[0].id)),
        "{m}"
    );
    // ... is fine when the inventory names it: it is used, not adopted
    let named = loaded("fy", "local", 1, 1, "    network: {name: fy}\n");
    with(&named, |d| plan::check(d, &build(d, &l))).unwrap();
    // a server group with another policy
    let l = Listings {
        server_groups: groups.clone(),
        ..Listings::default()
    };
    let m = refused(&l, &fy);
    assert!(
        m.contains("server group fy-worker (") && m.ends_with(") exists with policy anti-affinity, not the soft-anti-affinity kubeforge creates, so it is not kubeforge's; rename or delete it"),
        "{m}"
    );
    // ... but not when the cluster has no workers to put in it
    let no_workers = loaded("fy", "octavia", 1, 0, "");
    with(&no_workers, |d| plan::check(d, &build(d, &l))).unwrap();
    // an untagged load balancer of the cluster's name, with loadBalancer: octavia only
    let l = Listings {
        load_balancers: Some(lbs.clone()),
        ..Listings::default()
    };
    let m = refused(&l, &fy);
    assert!(
        m.starts_with("load balancer fy-api (")
            && m.contains("exists but is not kubeforge's (no tag kubeforge-cluster-fy)"),
        "{m}"
    );
    let local = loaded("fy", "local", 1, 1, "");
    with(&local, |d| plan::check(d, &build(d, &l))).unwrap();
}

#[test]
fn plan_creates_everything_for_a_new_cluster() {
    let l = fx(1, 2);
    let p = with(&l, |d| plan::plan(d, &Observed::default()));
    assert_eq!(
        verbs(&p),
        [
            "create key pair kubeforge-fx",
            "create network fx",
            "create subnet fx",
            "create router fx",
            "create security group fx-common",
            "create security group fx-control-plane",
            "create security group fx-worker",
            "create server group fx-control-plane",
            "create server fx-control-plane-1",
            "create server group fx-worker",
            "create server fx-worker-1",
            "create server fx-worker-2",
            "ensure floating IPs one per server",
            "create load balancer fx-api (TCP 6443, one member per control plane)",
        ]
    );
    assert_eq!(p.iter().filter(|a| a.creates_server()).count(), 3);
    assert!(p.iter().all(|a| !a.is_destructive()));
}

#[test]
fn plan_adopts_what_exists_and_changes_nothing() {
    let l = fx(1, 2);
    let p = with(&l, |d| plan::plan(d, &observed_fx()));
    assert!(!p.iter().any(CloudAction::is_change), "{:?}", verbs(&p));
    assert_eq!(
        verbs(&p),
        [
            "adopt key pair kubeforge-fx",
            "adopt network fx",
            "adopt subnet fx",
            "adopt router fx",
            "adopt security group fx-common",
            "adopt security group fx-control-plane",
            "adopt security group fx-worker",
            "adopt server group fx-control-plane",
            "adopt server fx-control-plane-1",
            "adopt server group fx-worker",
            "adopt server fx-worker-1",
            "adopt server fx-worker-2",
            "ensure floating IPs one per server",
            "adopt load balancer fx-api (TCP 6443, one member per control plane)",
        ]
    );
}

#[test]
fn plan_scales_up_and_down_and_replaces_failed_builds() {
    // a raised count creates the next server only
    let up = fx(1, 3);
    let p = with(&up, |d| plan::plan(d, &observed_fx()));
    let changes: Vec<String> = verbs(&p)
        .into_iter()
        .filter(|a| !a.starts_with("adopt") && !a.starts_with("ensure"))
        .collect();
    assert_eq!(changes, ["create server fx-worker-3"]);
    // a lowered count deletes the highest-numbered server, after its node is removed
    let down = fx(1, 1);
    let p = with(&down, |d| plan::plan(d, &observed_fx()));
    let destructive: Vec<String> = p
        .iter()
        .filter(|a| a.is_destructive())
        .map(|a| a.to_string())
        .collect();
    assert_eq!(
        destructive,
        ["delete server fx-worker-2 (after removing its node)"]
    );
    assert!(verbs(&p).contains(&"adopt server fx-worker-1".to_string()));
    // no workers at all: no worker server group either, and both workers go
    let none = fx(1, 0);
    let p = verbs(&with(&none, |d| plan::plan(d, &observed_fx())));
    assert!(
        !p.iter().any(|a| a.contains("server group fx-worker")),
        "{p:?}"
    );
    assert_eq!(
        p.iter().filter(|a| a.starts_with("delete server")).count(),
        2
    );

    // a server whose build failed is replaced, not adopted
    let fz = loaded("fz", "local", 1, 0, "    floatingIps: false\n");
    let l = Listings {
        servers: fixture!(api::Servers, "failed_servers").servers,
        ..Listings::default()
    };
    let p = with(&fz, |d| plan::plan(d, &build(d, &l)));
    let server: Vec<&CloudAction> = p.iter().filter(|a| a.kind == Kind::Server).collect();
    assert_eq!(
        server,
        [&CloudAction::new(
            Verb::Replace,
            Kind::Server,
            "fz-control-plane-1"
        )]
    );
    assert!(server[0].is_destructive() && server[0].creates_server());
    // without Octavia and floating IPs, neither is planned
    assert!(
        !p.iter()
            .any(|a| matches!(a.kind, Kind::LoadBalancer | Kind::FloatingIps))
    );
}

#[test]
fn plan_uses_a_named_network() {
    let l = loaded(
        "fx",
        "local",
        1,
        0,
        "    network: {name: private}\n    floatingIps: false\n",
    );
    let p = verbs(&with(&l, |d| plan::plan(d, &Observed::default())));
    assert!(p.contains(&"use network private".to_string()), "{p:?}");
    assert!(
        !p.iter()
            .any(|a| a.contains("subnet") || a.contains("router")),
        "{p:?}"
    );
}

#[test]
fn teardown_deletes_exactly_the_clusters_tagged_resources() {
    let l = fx(1, 2);
    let o = observed_fx();
    let t = with(&l, |d| teardown::teardown_plan(d, o.clone(), Some(FX_KEY)));
    assert!(t.kept.is_empty(), "{:?}", t.kept);
    let mut a = verbs(&t.actions("fx"));
    // floating IPs in the order Neutron listed them
    let fips: Vec<String> = a.drain(1..4).collect();
    assert!(
        fips.iter()
            .all(|f| f.starts_with("delete floating IP 203.0.113.")),
        "{fips:?}"
    );
    assert_eq!(
        a,
        [
            "delete load balancer fx-api",
            "delete server fx-control-plane-1",
            "delete server fx-worker-1",
            "delete server fx-worker-2",
            "delete router fx",
            "delete network fx",
            "delete security group fx-common",
            "delete security group fx-control-plane",
            "delete security group fx-worker",
            "delete server group fx-control-plane",
            "delete server group fx-worker",
            "delete key pair kubeforge-fx",
        ]
    );
    // by ID: exactly the IDs the lab returned for the cluster's tagged resources
    let ids = t.ids();
    let of = |k: Kind| -> Vec<&str> {
        ids.iter()
            .filter(|(x, _)| *x == k)
            .map(|(_, id)| id.as_str())
            .collect()
    };
    let mut servers: Vec<String> = fixture!(api::Servers, "servers")
        .servers
        .into_iter()
        .map(|s| s.id)
        .collect();
    servers.sort_by_key(|id| o.servers.iter().position(|x| &x.id == id));
    assert_eq!(of(Kind::Server), servers);
    let fip_ids: Vec<String> = fixture!(api::FloatingIps, "floating_ips")
        .floatingips
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(of(Kind::FloatingIp), fip_ids);
    assert_eq!(
        of(Kind::LoadBalancer),
        [
            fixture!(api::LoadBalancers, "load_balancers").loadbalancers[0]
                .id
                .as_str()
        ]
    );
    assert_eq!(
        of(Kind::Network),
        [fixture!(api::Networks, "networks").networks[0].id.as_str()]
    );
    let mut sgs: Vec<String> = fixture!(api::SecurityGroups, "security_groups")
        .security_groups
        .into_iter()
        .map(|g| g.id)
        .collect();
    sgs.sort_by_key(|id| o.security_groups.values().position(|x| x == id));
    assert_eq!(of(Kind::SecurityGroup), sgs);
    // the server group fy-worker (not the cluster's name) is not deleted
    let fy_group = fixture!(api::ServerGroups, "server_groups")
        .server_groups
        .into_iter()
        .find(|g| g.name == "fy-worker")
        .unwrap();
    assert!(!of(Kind::ServerGroup).contains(&fy_group.id.as_str()));
    assert_eq!(of(Kind::ServerGroup).len(), 2);
}

#[test]
fn teardown_leaves_what_is_not_the_clusters_and_says_why() {
    let l = fx(1, 2);
    // another public key in the key pair, or none to compare with
    let t = with(&l, |d| {
        teardown::teardown_plan(d, observed_fx(), Some("ssh-ed25519 AAAAOTHER me"))
    });
    assert!(!t.actions("fx").iter().any(|a| a.kind == Kind::KeyPair));
    assert_eq!(
        t.kept,
        [
            "key pair kubeforge-fx: it holds another public key than the inventory's; delete it yourself if it is the cluster's (`openstack keypair delete kubeforge-fx`)"
        ]
    );
    let t = with(&l, |d| teardown::teardown_plan(d, observed_fx(), None));
    assert!(t.kept[0].contains("the inventory's public key cannot be read to compare"));
    // a server group that also holds a server that is not the cluster's
    let mut o = observed_fx();
    o.server_groups
        .get_mut("fx-worker")
        .unwrap()
        .members
        .push("someone-elses".into());
    let t = with(&l, |d| teardown::teardown_plan(d, o, Some(FX_KEY)));
    assert!(
        !t.actions("fx")
            .iter()
            .any(|a| a.to_string() == "delete server group fx-worker")
    );
    assert!(
        t.kept[0].starts_with("server group fx-worker (")
            && t.kept[0].ends_with(
                "its members include servers that are not the cluster's (someone-elses)"
            ),
        "{:?}",
        t.kept
    );
    // an untagged network and load balancer of the cluster's name: left, and said so
    let fy = loaded("fy", "octavia", 1, 1, "");
    let lists = Listings {
        networks: fixture!(api::Networks, "foreign_networks").networks,
        load_balancers: Some(fixture!(api::LoadBalancers, "foreign_load_balancers").loadbalancers),
        ..Listings::default()
    };
    let t = with(&fy, |d| teardown::teardown_plan(d, build(d, &lists), None));
    assert!(t.actions("fy").is_empty(), "{:?}", verbs(&t.actions("fy")));
    assert!(t.ids().is_empty());
    assert_eq!(t.kept.len(), 2, "{:?}", t.kept);
    assert!(
        t.kept[0].starts_with("load balancer fy-api (")
            && t.kept[0].ends_with("): no tag kubeforge-cluster-fy")
    );
    assert!(
        t.kept[1].starts_with("network fy (")
            && t.kept[1].ends_with("): no tag kubeforge-cluster-fy")
    );
}

#[test]
fn ensure_looks_up_image_flavors_and_external_network() {
    let images = fixture!(api::Images, "images").images;
    let tiny = images[0].id.clone();
    assert_eq!(pick_image(&images, "tiny"), Some(tiny.clone()));
    assert_eq!(pick_image(&images, &tiny), Some(tiny));
    assert_eq!(pick_image(&images, "nope"), None);

    let flavors = fixture!(api::Flavors, "flavors").flavors;
    let l = fx(1, 2);
    let f = with(&l, |d| pick_flavors(d, &flavors)).unwrap();
    assert_eq!(f.keys().collect::<Vec<_>>(), ["m1.small", "m1.tiny"]);
    let small = flavors.iter().find(|x| x.name == "m1.small").unwrap();
    assert_eq!(f["m1.small"], small.id);
    let bad = loaded("fx", "local", 1, 0, "");
    let mut os = bad.inventory.spec.openstack.clone().unwrap();
    os.control_plane.as_mut().unwrap().flavor = "m9.huge".into();
    let err = pick_flavors(
        &Desired {
            cluster: &bad.cluster,
            os: &os,
        },
        &flavors,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "flavor `m9.huge` does not exist in the cloud (available: fx-giant, m1.large, m1.medium, m1.small, m1.tiny, m1.xlarge)"
    );
    // a role with no servers needs no flavor
    os.control_plane.as_mut().unwrap().count = 0;
    assert!(
        pick_flavors(
            &Desired {
                cluster: &bad.cluster,
                os: &os
            },
            &flavors
        )
        .unwrap()
        .is_empty()
    );

    let ext = fixture!(api::Networks, "external_networks").networks;
    let public = ext[0].id.clone();
    assert_eq!(pick_external_network(&ext, None).unwrap(), public);
    assert_eq!(pick_external_network(&ext, Some("public")).unwrap(), public);
    assert_eq!(pick_external_network(&ext, Some(&public)).unwrap(), public);
    assert_eq!(
        pick_external_network(&ext, Some("nope"))
            .unwrap_err()
            .to_string(),
        "external network `nope` does not exist in the cloud (available: public)"
    );
    let mut two = ext.clone();
    two.push(api::Network {
        id: "x".into(),
        name: "public2".into(),
        tags: vec![],
    });
    assert!(
        pick_external_network(&two, None)
            .unwrap_err()
            .to_string()
            .contains("the cloud has 2 external networks (public, public2)")
    );
}

#[test]
fn ensure_finds_the_load_balancers_parts_and_members_to_change() {
    use super::ensure::load_balancer::{member_changes, pick_listener, pick_pool};
    let lb = fixture!(api::LoadBalancers, "load_balancers").loadbalancers[0]
        .id
        .clone();
    let listeners = fixture!(api::Listeners, "listeners").listeners;
    let listener = pick_listener(&listeners, &lb).expect("the TCP 6443 listener");
    assert_eq!(listener, listeners[0].id);
    assert_eq!(pick_listener(&listeners, "another-lb"), None);
    let pools = fixture!(api::Pools, "pools").pools;
    assert_eq!(pick_pool(&pools, &listener, &lb), Some(pools[0].id.clone()));
    assert_eq!(pick_pool(&pools, "another-listener", &lb), None);
    let monitors = fixture!(api::HealthMonitors, "health_monitors").healthmonitors;
    assert!(monitors[0].pools.iter().any(|p| p.id == pools[0].id));

    let members = fixture!(api::Members, "members").members;
    let o = observed_fx();
    let cp = o.servers[0].clone();
    assert_eq!(members[0].address, cp.fixed_ip.clone().unwrap());
    let (add, remove) = member_changes(&members, &[&cp]);
    assert!(add.is_empty() && remove.is_empty());
    // a second control plane is added; a gone one's member removed
    let mut cp2 = cp.clone();
    cp2.name = "fx-control-plane-2".into();
    cp2.fixed_ip = Some("10.77.0.99".into());
    let (add, remove) = member_changes(&members, &[&cp, &cp2]);
    assert_eq!(
        add.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
        ["fx-control-plane-2"]
    );
    assert!(remove.is_empty());
    let (add, remove) = member_changes(&members, &[&cp2]);
    assert_eq!(add.len(), 1);
    assert_eq!(
        remove.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["fx-control-plane-1"]
    );
}

#[test]
fn ensure_sees_whether_the_router_is_on_the_subnet() {
    use super::ensure::network::on_subnet;
    let ports = fixture!(api::Ports, "router_ports").ports;
    let subnet = fixture!(api::Subnets, "subnets").subnets[0].id.clone();
    assert!(on_subnet(&ports, &subnet));
    assert!(!on_subnet(&ports, "another-subnet"));
    assert!(!on_subnet(&[], &subnet));
    let server_ports = fixture!(api::Ports, "server_ports").ports;
    assert_eq!(server_ports.len(), 1, "the control plane's port on fx");
}

#[test]
fn resolved_adds_the_servers_and_the_vip_to_a_new_cluster() {
    let l = fx(1, 1);
    let r = super::resolve_observed(&l, &observed_fx()).unwrap();
    // fx-worker-2 is beyond the count: not a host
    let names: Vec<&str> = r.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["fx-control-plane-1", "fx-worker-1"]);
    assert_eq!(r.hosts[0].ssh.address, "203.0.113.124");
    assert_eq!(r.hosts[0].private_address.as_deref(), Some("10.77.0.44"));
    assert_eq!(r.endpoint, Some(("198.51.100.1".into(), 6443)));
    let before = l.cluster.hosts.len();
    let out = super::resolved(&l, &r);
    assert_eq!(out.cluster.hosts.len(), before + 2);
    assert_eq!(
        out.cluster.api.endpoint,
        Some(("198.51.100.1".into(), 6443))
    );
    // the model it was built from is unchanged
    assert_eq!(l.cluster.hosts.len(), before);
    assert_ne!(l.cluster.api.endpoint, out.cluster.api.endpoint);
    // a server not ACTIVE is no host; without Octavia the VIP is no endpoint
    let mut o = observed_fx();
    o.servers[1].status = "BUILD".into();
    let local = loaded("fx", "local", 1, 2, "    floatingIps: false\n");
    let r = super::resolve_observed(&local, &o).unwrap();
    assert_eq!(r.hosts.len(), 2);
    assert_eq!(r.endpoint, None);
    assert_eq!(
        hosts(&local.cluster, &o.servers[..1])[0].ssh.address,
        "203.0.113.124"
    );
}
