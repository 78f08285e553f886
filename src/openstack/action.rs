//! One change to the cloud (`create server demo-worker-1`), for `plan`, reports and
//! `plan -o json`'s `cloud` field (a public format: the verbs and kinds serialize to the same
//! strings they always have).

use serde::Serialize;

/// What happens to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Create,
    Adopt,
    /// A network named in the inventory, used as it is.
    Use,
    /// A server whose build failed, deleted and created again.
    Replace,
    Delete,
    /// Floating IPs: one per server, made where missing.
    Ensure,
    /// A router attached to its subnet after an interrupted run.
    Attach,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Adopt => "adopt",
            Verb::Use => "use",
            Verb::Replace => "replace",
            Verb::Delete => "delete",
            Verb::Ensure => "ensure",
            Verb::Attach => "attach",
        }
    }
    /// Changes the cloud: something is made or deleted.
    pub fn is_change(self) -> bool {
        matches!(self, Verb::Create | Verb::Delete | Verb::Replace)
    }
    /// Deletes something (a replace deletes the failed server first).
    pub fn is_destructive(self) -> bool {
        matches!(self, Verb::Delete | Verb::Replace)
    }
    /// Creates something (a replace creates the server again).
    pub fn creates(self) -> bool {
        matches!(self, Verb::Create | Verb::Replace)
    }
    /// The plan's mark: `+` create, `-` delete, `~` replace, `=` the rest.
    pub fn sign(self) -> char {
        match self {
            Verb::Create => '+',
            Verb::Delete => '-',
            Verb::Replace => '~',
            _ => '=',
        }
    }
    /// The past tense, for reports (`created server demo-worker-1`).
    pub fn done(self) -> &'static str {
        match self {
            Verb::Create => "created",
            Verb::Adopt => "adopted",
            Verb::Use => "used",
            Verb::Replace => "replaced",
            Verb::Delete => "deleted",
            Verb::Ensure => "ensured",
            Verb::Attach => "attached",
        }
    }
}

/// The kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    #[serde(rename = "key pair")]
    KeyPair,
    #[serde(rename = "network")]
    Network,
    #[serde(rename = "subnet")]
    Subnet,
    #[serde(rename = "router")]
    Router,
    #[serde(rename = "security group")]
    SecurityGroup,
    #[serde(rename = "server group")]
    ServerGroup,
    #[serde(rename = "server")]
    Server,
    /// The plan's one line for all of them.
    #[serde(rename = "floating IPs")]
    FloatingIps,
    #[serde(rename = "floating IP")]
    FloatingIp,
    #[serde(rename = "load balancer")]
    LoadBalancer,
    #[serde(rename = "listener")]
    Listener,
    #[serde(rename = "pool")]
    Pool,
    #[serde(rename = "health monitor")]
    HealthMonitor,
    #[serde(rename = "pool member")]
    PoolMember,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KeyPair => "key pair",
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Router => "router",
            Kind::SecurityGroup => "security group",
            Kind::ServerGroup => "server group",
            Kind::Server => "server",
            Kind::FloatingIps => "floating IPs",
            Kind::FloatingIp => "floating IP",
            Kind::LoadBalancer => "load balancer",
            Kind::Listener => "listener",
            Kind::Pool => "pool",
            Kind::HealthMonitor => "health monitor",
            Kind::PoolMember => "pool member",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One change to the cloud, for `plan` and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudAction {
    pub verb: Verb,
    pub kind: Kind,
    pub name: String,
}

impl CloudAction {
    pub fn new(verb: Verb, kind: Kind, name: impl Into<String>) -> CloudAction {
        CloudAction {
            verb,
            kind,
            name: name.into(),
        }
    }
    pub fn is_change(&self) -> bool {
        self.verb.is_change()
    }
    pub fn is_destructive(&self) -> bool {
        self.verb.is_destructive()
    }
    /// A server that is created (or created again): it gets the whole bootstrap.
    pub fn creates_server(&self) -> bool {
        self.kind == Kind::Server && self.verb.creates()
    }
}

impl std::fmt::Display for CloudAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.verb, self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERBS: [Verb; 7] = [
        Verb::Create,
        Verb::Adopt,
        Verb::Use,
        Verb::Replace,
        Verb::Delete,
        Verb::Ensure,
        Verb::Attach,
    ];
    const KINDS: [Kind; 14] = [
        Kind::KeyPair,
        Kind::Network,
        Kind::Subnet,
        Kind::Router,
        Kind::SecurityGroup,
        Kind::ServerGroup,
        Kind::Server,
        Kind::FloatingIps,
        Kind::FloatingIp,
        Kind::LoadBalancer,
        Kind::Listener,
        Kind::Pool,
        Kind::HealthMonitor,
        Kind::PoolMember,
    ];

    #[test]
    fn json_is_the_strings_of_before() {
        let a = CloudAction::new(Verb::Replace, Kind::Server, "demo-worker-1");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"verb":"replace","kind":"server","name":"demo-worker-1"}"#
        );
        // every verb and kind serializes to what Display prints (the strings of the &str era)
        for v in VERBS {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        for k in KINDS {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let all: Vec<&str> = KINDS.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            all,
            [
                "key pair",
                "network",
                "subnet",
                "router",
                "security group",
                "server group",
                "server",
                "floating IPs",
                "floating IP",
                "load balancer",
                "listener",
                "pool",
                "health monitor",
                "pool member"
            ]
        );
    }

    #[test]
    fn changes_signs_and_padding() {
        let changes: Vec<&str> = VERBS
            .iter()
            .filter(|v| v.is_change())
            .map(|v| v.as_str())
            .collect();
        assert_eq!(changes, ["create", "replace", "delete"]);
        let destructive: Vec<&str> = VERBS
            .iter()
            .filter(|v| v.is_destructive())
            .map(|v| v.as_str())
            .collect();
        assert_eq!(destructive, ["replace", "delete"]);
        let signs: String = VERBS.iter().map(|v| v.sign()).collect();
        assert_eq!(signs, "+==~-==");
        assert_eq!(format!("{:<14}|", Kind::Server), "server        |");
        assert!(CloudAction::new(Verb::Replace, Kind::Server, "x").creates_server());
        assert!(!CloudAction::new(Verb::Create, Kind::ServerGroup, "x").creates_server());
        assert!(!CloudAction::new(Verb::Adopt, Kind::Server, "x").creates_server());
        assert_eq!(
            CloudAction::new(Verb::Delete, Kind::FloatingIp, "203.0.113.5").to_string(),
            "delete floating IP 203.0.113.5"
        );
    }
}
