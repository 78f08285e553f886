//! Where and how to connect to a host: the inventory's settings, then `~/.ssh/config`'s, then
//! defaults (user root, port 22, ~/.ssh/id_{ed25519,ecdsa,rsa}, ~/.ssh/known_hosts).

use super::config::{ConfigError, SshConfig, parse_proxy_jump};
use crate::model::{Cluster, SshTarget};
use std::path::PathBuf;
use std::time::Duration;

/// A fully resolved connection target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name used in messages: the inventory host name, or `bastion <address>`.
    pub name: String,
    /// The host to connect to (ssh_config's HostName, else the inventory address).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Key files to try, in order.
    pub identity_files: Vec<PathBuf>,
    /// Only the given key is used (from the inventory, or IdentitiesOnly).
    pub identities_only: bool,
    /// known_hosts files: the first is where accepted keys are recorded.
    pub known_hosts: Vec<PathBuf>,
    pub jump: Option<Box<Target>>,
    pub connect_timeout: Duration,
}

impl Target {
    /// `user@host:port`, with every jump host before it.
    pub fn describe(&self) -> String {
        let me = format!("{}@{}:{}", self.user, self.host, self.port);
        match &self.jump {
            Some(j) => format!("{me} via {}", j.describe()),
            None => me,
        }
    }
}

pub struct Resolver {
    config: SshConfig,
    known_hosts: Option<PathBuf>,
    default_user: Option<String>,
    connect_timeout: Duration,
    /// `connect_timeout` came from the command line: ~/.ssh/config's ConnectTimeout yields.
    timeout_given: bool,
}

const DEFAULT_KEYS: &[&str] = &["id_ed25519", "id_ecdsa", "id_rsa"];

impl Resolver {
    pub fn new(cluster: &Cluster, connect_timeout: Duration) -> Result<Self, ConfigError> {
        let config = match &cluster.ssh.config {
            Some(p) => SshConfig::load(p)?,
            None => SshConfig::default(),
        };
        Ok(Resolver {
            config,
            known_hosts: cluster.ssh.known_hosts.clone(),
            default_user: None,
            connect_timeout,
            timeout_given: false,
        })
    }

    /// The timeout was given explicitly (the command line), so it overrides ssh_config's.
    pub fn timeout_given(mut self, given: bool) -> Self {
        self.timeout_given = given;
        self
    }

    /// A resolver from an explicit config (tests, or tools without an inventory).
    pub fn with_config(
        config: SshConfig,
        known_hosts: Option<PathBuf>,
        connect_timeout: Duration,
    ) -> Self {
        Resolver {
            config,
            known_hosts,
            default_user: None,
            connect_timeout,
            timeout_given: false,
        }
    }

    fn home_ssh(file: &str) -> Option<PathBuf> {
        dirs::home_dir().map(|h| h.join(".ssh").join(file))
    }

    /// Resolves an inventory host's SSH settings.
    pub fn target(&self, name: &str, t: &SshTarget) -> Target {
        self.resolve(name.to_string(), t, None, 0)
    }

    fn resolve(
        &self,
        name: String,
        t: &SshTarget,
        fallback: Option<&Target>,
        depth: usize,
    ) -> Target {
        let o = self.config.lookup(&t.address);
        let user = t
            .user
            .clone()
            .or(o.user.clone())
            .or_else(|| fallback.map(|f| f.user.clone()))
            .or_else(|| self.default_user.clone())
            .unwrap_or_else(|| "root".to_string());
        let (identity_files, identities_only) = match &t.key_path {
            Some(k) => (vec![k.clone()], true),
            None if !o.identity_files.is_empty() => (o.identity_files.clone(), o.identities_only),
            None => match fallback.filter(|f| f.identities_only) {
                Some(f) => (f.identity_files.clone(), true),
                None => (
                    DEFAULT_KEYS
                        .iter()
                        .filter_map(|k| Self::home_ssh(k))
                        .filter(|p| p.exists())
                        .collect(),
                    false,
                ),
            },
        };
        let mut known_hosts: Vec<PathBuf> = Vec::new();
        if let Some(k) = &self.known_hosts {
            known_hosts.push(k.clone());
        } else if !o.user_known_hosts_files.is_empty() {
            known_hosts.extend(o.user_known_hosts_files.iter().cloned());
        } else if let Some(k) = Self::home_ssh("known_hosts") {
            known_hosts.push(k);
        }
        known_hosts.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        let host = o.hostname.clone().unwrap_or_else(|| t.address.clone());
        let port = t.port.or(o.port).unwrap_or(22);
        let connect_timeout = match o.connect_timeout {
            Some(secs) if !self.timeout_given => Duration::from_secs(secs),
            _ => self.connect_timeout,
        };
        let mut target = Target {
            name,
            host,
            port,
            user,
            identity_files,
            identities_only,
            known_hosts,
            jump: None,
            connect_timeout,
        };
        if depth > 4 {
            return target;
        }
        // the inventory's bastion, else ssh_config's ProxyJump (a chain: a,b → a then b)
        let jump_spec: Option<SshTarget> = match &t.bastion {
            Some(b) => Some((**b).clone()),
            None => o
                .proxy_jump
                .as_deref()
                .map(parse_proxy_jump)
                .and_then(|hops| {
                    let mut chain: Option<SshTarget> = None;
                    for h in hops {
                        chain = Some(SshTarget {
                            address: h.host,
                            port: h.port,
                            user: h.user,
                            key_path: None,
                            bastion: chain.map(Box::new),
                        });
                    }
                    chain
                }),
        };
        if let Some(j) = jump_spec {
            let name = format!("bastion {}", j.address);
            target.jump = Some(Box::new(self.resolve(name, &j, Some(&target), depth + 1)));
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn resolver(cfg: &str) -> Resolver {
        let mut c = SshConfig::default();
        c.parse(Path::new("/cfg"), cfg, Some(Path::new("/home/u")), 0)
            .unwrap();
        Resolver::with_config(c, Some(PathBuf::from("/kh")), Duration::from_secs(7))
    }

    fn st(address: &str) -> SshTarget {
        SshTarget {
            address: address.into(),
            port: None,
            user: None,
            key_path: None,
            bastion: None,
        }
    }

    #[test]
    fn inventory_overrides_config_which_overrides_defaults() {
        let r = resolver(
            "Host node2\n  HostName 10.123.0.12\n  User ops\n  Port 2200\n  IdentityFile /k/node2\n",
        );
        let t = r.target("node2", &st("node2"));
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.123.0.12", 2200, "ops")
        );
        assert_eq!(t.identity_files, vec![PathBuf::from("/k/node2")]);
        assert_eq!(t.known_hosts[0], PathBuf::from("/kh"));
        assert_eq!(t.connect_timeout, Duration::from_secs(7));
        let mut s = st("node2");
        s.user = Some("root".into());
        s.port = Some(22);
        s.key_path = Some(PathBuf::from("/k/explicit"));
        let t = r.target("node2", &s);
        assert_eq!((t.port, t.user.as_str()), (22, "root"));
        assert_eq!(t.identity_files, vec![PathBuf::from("/k/explicit")]);
        assert!(t.identities_only);
        let t = r.target("x", &st("10.0.0.9"));
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.0.0.9", 22, "root")
        );
        assert!(t.jump.is_none());
    }

    #[test]
    fn bastions_from_inventory_or_proxy_jump() {
        let r = resolver("Host 10.1.*\n  ProxyJump hop1,jump@hop2:2222\n");
        let t = r.target("n", &st("10.1.0.5"));
        let j = t.jump.as_ref().unwrap();
        assert_eq!(
            (j.host.as_str(), j.port, j.user.as_str()),
            ("hop2", 2222, "jump")
        );
        let j1 = j.jump.as_ref().unwrap();
        assert_eq!(j1.host, "hop1");
        assert_eq!(
            j1.user, "jump",
            "falls back to the user of the host it leads to"
        );
        assert_eq!(
            t.describe(),
            "root@10.1.0.5:22 via jump@hop2:2222 via jump@hop1:22"
        );

        let mut s = st("10.1.0.5");
        s.user = Some("ops".into());
        s.key_path = Some(PathBuf::from("/k/ops"));
        s.bastion = Some(Box::new(SshTarget {
            address: "203.0.113.5".into(),
            port: None,
            user: Some("jump".into()),
            key_path: None,
            bastion: None,
        }));
        let t = r.target("n", &s);
        let j = t.jump.as_ref().unwrap();
        assert_eq!(j.name, "bastion 203.0.113.5");
        assert_eq!(j.user, "jump");
        assert_eq!(
            j.identity_files,
            vec![PathBuf::from("/k/ops")],
            "the host's key is tried on its bastion"
        );
        assert!(
            j.jump.is_none(),
            "the inventory's bastion replaces ProxyJump"
        );
    }
}
