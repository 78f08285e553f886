//! Public-key authentication: ssh-agent identities, then key files. An encrypted key is used
//! through the agent when the agent holds it, else its passphrase is asked once on the terminal
//! (never read from a file or an argument) and the decrypted key is kept in memory for the run.

use super::SshError;
use super::resolve::Target;
use russh::client::{Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Keys and passphrases for one run, shared by every connection.
pub struct Credentials {
    interactive: bool,
    /// Decrypted keys by path; the lock also serializes passphrase prompts.
    keys: tokio::sync::Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
}

enum Loaded {
    Key(Arc<PrivateKey>),
    Encrypted,
}

impl Credentials {
    pub fn new(interactive: bool) -> Self {
        Credentials {
            interactive,
            keys: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The `.pub` beside a key file, when there is a readable one: it only lets agent keys be
    /// matched to key files, and a key without one is still offered from its private file.
    fn public_key_of(path: &Path) -> Option<PublicKey> {
        let mut p = path.as_os_str().to_owned();
        p.push(".pub");
        let p = PathBuf::from(p);
        match russh::keys::load_public_key(&p) {
            Ok(k) => Some(k),
            Err(e) => {
                if p.exists() {
                    tracing::debug!("{}: not used: {e}", p.display());
                }
                None
            }
        }
    }

    async fn load(&self, target: &Target, path: &Path) -> Result<Loaded, SshError> {
        let mut cache = self.keys.lock().await;
        if let Some(k) = cache.get(path) {
            return Ok(Loaded::Key(k.clone()));
        }
        let key_err = |message: String| SshError::Key {
            host: target.name.clone(),
            path: path.to_path_buf(),
            message,
        };
        match russh::keys::load_secret_key(path, None) {
            Ok(k) => {
                let k = Arc::new(k);
                cache.insert(path.to_path_buf(), k.clone());
                Ok(Loaded::Key(k))
            }
            Err(russh::keys::Error::KeyIsEncrypted) => {
                if !self.interactive {
                    return Ok(Loaded::Encrypted);
                }
                let path_s = path.display().to_string();
                for _ in 0..3 {
                    let prompt = format!("Enter passphrase for key {path_s}: ");
                    // the per-host progress lines would redraw over the prompt
                    let pass = tokio::task::block_in_place(|| {
                        crate::progress::suspend(|| rpassword::prompt_password(prompt))
                    })
                    .map_err(|e| key_err(format!("cannot read the passphrase: {e}")))?;
                    match russh::keys::load_secret_key(path, Some(&pass)) {
                        Ok(k) => {
                            let k = Arc::new(k);
                            cache.insert(path.to_path_buf(), k.clone());
                            return Ok(Loaded::Key(k));
                        }
                        Err(_) => eprintln!("wrong passphrase for {path_s}"),
                    }
                }
                Err(key_err("wrong passphrase".into()))
            }
            Err(e) => Err(key_err(e.to_string())),
        }
    }

    /// Authenticates `target.user` on an established connection.
    pub async fn authenticate<H: Handler>(
        &self,
        handle: &mut Handle<H>,
        target: &Target,
    ) -> Result<(), SshError> {
        let host = &target.name;
        let proto = |e: russh::Error| SshError::Protocol {
            host: host.clone(),
            message: e.to_string(),
        };
        // each exchange with the server is bounded (a stalled PAM or LDAP lookup must not hang
        // the run); a passphrase prompt on the terminal is not
        let limit = target.connect_timeout;
        let stalled = || SshError::Protocol {
            host: host.clone(),
            message: format!(
                "the server did not answer authentication within {}s",
                limit.as_secs()
            ),
        };
        let rsa_hash = tokio::time::timeout(limit, handle.best_supported_rsa_hash())
            .await
            .map_err(|_| stalled())?
            .map_err(proto)?
            .flatten();
        let mut tried: Vec<String> = Vec::new();
        let mut tried_keys: Vec<PublicKey> = Vec::new();
        let wanted: Vec<PublicKey> = target
            .identity_files
            .iter()
            .filter_map(|p| Self::public_key_of(p))
            .collect();

        // 1. ssh-agent
        if std::env::var_os("SSH_AUTH_SOCK").is_some() {
            match AgentClient::connect_env().await {
                Ok(mut agent) => match agent.request_identities().await {
                    Ok(ids) => {
                        for id in ids {
                            let AgentIdentity::PublicKey { key, comment } = id else {
                                continue;
                            };
                            if target.identities_only
                                && !wanted.iter().any(|w| w.key_data() == key.key_data())
                            {
                                continue;
                            }
                            let hash = if key.algorithm().is_rsa() {
                                rsa_hash
                            } else {
                                None
                            };
                            let r = tokio::time::timeout(
                                limit,
                                handle.authenticate_publickey_with(
                                    target.user.clone(),
                                    key.clone(),
                                    hash,
                                    &mut agent,
                                ),
                            )
                            .await
                            .map_err(|_| stalled())?;
                            match r {
                                Ok(res) if res.success() => return Ok(()),
                                Ok(_) => tried.push(format!("agent key {comment} rejected")),
                                Err(e) => tried.push(format!("agent key {comment}: {e}")),
                            }
                            tried_keys.push(key);
                        }
                    }
                    Err(e) => tried.push(format!("ssh-agent: {e}")),
                },
                Err(e) => tried.push(format!("ssh-agent: {e}")),
            }
        }

        // 2. key files
        for path in &target.identity_files {
            let shown = path.display();
            if !path.exists() {
                if target.identities_only {
                    return Err(SshError::Key {
                        host: host.clone(),
                        path: path.clone(),
                        message: "no such file".into(),
                    });
                }
                tried.push(format!("{shown}: no such file"));
                continue;
            }
            if let Some(p) = Self::public_key_of(path)
                && tried_keys.iter().any(|t| t.key_data() == p.key_data())
            {
                continue; // already offered by the agent
            }
            let key = match self.load(target, path).await? {
                Loaded::Key(k) => k,
                Loaded::Encrypted => {
                    tried.push(format!(
                        "{shown} is encrypted and not in ssh-agent (add it with `ssh-add {shown}`, or run on a terminal to be asked for its passphrase)"
                    ));
                    continue;
                }
            };
            let hash = if key.algorithm().is_rsa() {
                rsa_hash
            } else {
                None
            };
            let res = tokio::time::timeout(
                limit,
                handle.authenticate_publickey(
                    target.user.clone(),
                    PrivateKeyWithHashAlg::new(key, hash),
                ),
            )
            .await
            .map_err(|_| stalled())?
            .map_err(proto)?;
            if res.success() {
                return Ok(());
            }
            tried.push(format!("key {shown} rejected"));
        }
        if tried.is_empty() {
            tried.push(
                "no key to offer: set spec.ssh.keyPath, load a key into ssh-agent, or add IdentityFile to ~/.ssh/config"
                    .into(),
            );
        }
        Err(SshError::Auth {
            host: host.clone(),
            user: target.user.clone(),
            addr: format!("{}:{}", target.host, target.port),
            tried: tried.join("; "),
        })
    }
}
