//! ACL SETUSER and ACL DELUSER: slotway's users changed at run time, in memory, as Redis changes its own.
//!
//! The rules are applied by [`crate::auth::setuser`] to the user's definition (a new user starts as Redis's do),
//! compiled against the command table, and the new set of users is swapped into [`Live`]; sessions pick it up
//! before their next command (a deleted user's clients are disconnected). Without `[[users]]` slotway's only user
//! is the implicit `default` one (`on nopass ~* &* +@all`), and the first ACL SETUSER adds to it, as on a Redis
//! that has no users configured.
//!
//! A user that is provisioned on the nodes (`provision_upstream`, or created while `auth.provision_new_users` is
//! on) has its node user rewritten (or its password removed, when deleted) on every node before the command is
//! answered, so its scripts are confined by the new rules from the next command on. A new provisioned user gets
//! an upstream identity of its own (node connections logged in as `slotway:<name>`, opened on first use).
//!
//! A reload (SIGHUP, SLOTWAY RELOAD) sets the users from the configuration file again: changes made with ACL
//! SETUSER/DELUSER last until then, like Redis's until its next ACL LOAD.
use crate::auth::setuser::{self, Definition};
use crate::auth::{User, Users};
use crate::command::CommandTable;
use crate::live::Live;
use crate::provision::{NodeIdentity, Provisioner};
use crate::upstream::{ConnectContext, Identity, Upstreams};
use std::sync::Arc;

/// Changes slotway's users for ACL SETUSER / DELUSER (one change at a time).
pub struct AclAdmin {
    pub live: Arc<Live>,
    pub table: Arc<CommandTable>,
    pub upstreams: Arc<Upstreams>,
    pub provisioner: Arc<Provisioner>,
    /// One change at a time: each starts from the users the previous one left.
    pub serial: tokio::sync::Mutex<()>,
}

impl AclAdmin {
    /// ACL SETUSER `name` `rules...`. Ok(()) = `+OK`; Err = the error reply (without `-`).
    pub async fn setuser(&self, name: &[u8], rules: &[Vec<u8>]) -> Result<(), String> {
        let _one = self.serial.lock().await;
        let name = match std::str::from_utf8(name) {
            Ok(n) if !n.is_empty() && !n.contains(|c: char| c.is_ascii_whitespace() || c == '\0') => n.to_string(),
            _ => return Err("ERR Usernames can't contain spaces or null characters".into()),
        };
        let live = self.live.load();
        let config = live.config.clone();
        let users = self.current_users(live.users.as_ref(), config.auth_max_failures_per_minute);
        let existing = users.get(name.as_bytes()).cloned();
        let mut def = existing.as_ref().map_or_else(Definition::new_user, |u| u.definition());
        let rules: Vec<&[u8]> = rules.iter().map(Vec::as_slice).collect();
        setuser::apply(&mut def, &name, &rules, &self.table, config.acl_pubsub_default)?;
        let mut user = def.compile(&name, &self.table, config.acl_pubsub_default).map_err(|e| format!("ERR {e}"))?;
        match &existing {
            Some(old) => {
                user.upstream = old.upstream;
                user.provisioned = old.provisioned;
            }
            None if config.provision_new_users => {
                let id = self.provisioned_identity(&name, &config)?;
                user.upstream = id.identity;
                user.provisioned = true;
            }
            None => {}
        }
        let provisioned = user.provisioned;
        let next = users.with_user(user);
        if provisioned {
            self.provision(&next).await?;
        }
        self.live.replace_users(|_| Some(Arc::new(next)));
        tracing::info!(user = %name, created = existing.is_none(), "ACL SETUSER");
        Ok(())
    }

    /// ACL DELUSER `names...`: how many existed. `default` can't be removed (Redis's error).
    pub async fn deluser(&self, names: &[Vec<u8>]) -> Result<usize, String> {
        let _one = self.serial.lock().await;
        if names.iter().any(|n| n == b"default") {
            return Err("ERR The 'default' user cannot be removed".into());
        }
        let live = self.live.load();
        let Some(users) = live.users.clone() else { return Ok(0) };
        let gone: Vec<String> = names
            .iter()
            .filter_map(|n| users.get(n).map(|u| u.name.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let provisioned = gone.iter().any(|n| users.get(n.as_bytes()).is_some_and(|u| u.provisioned));
        let next = users.without(&gone);
        if provisioned {
            // Their node users lose this process's password.
            self.provision(&next).await?;
        }
        self.live.replace_users(|_| Some(Arc::new(next)));
        tracing::info!(users = %gone.join(","), "ACL DELUSER");
        Ok(gone.len())
    }

    /// The users in force, or, without any, the implicit `default` user alone.
    fn current_users(&self, users: Option<&Arc<Users>>, max_failures: u32) -> Users {
        match users {
            Some(u) => u.without(&[]),
            None => Users::new(vec![User::implicit_default(&self.table)], max_failures),
        }
    }

    /// The node identity of a user created now: this process's identity for that name if it had one (a user
    /// deleted and created again), else a new one with connections of its own.
    fn provisioned_identity(&self, name: &str, config: &crate::config::Config) -> Result<NodeIdentity, String> {
        if let Some(id) = self.provisioner.identity_of(name) {
            return Ok(id);
        }
        let default = self.upstreams.context(Identity::DEFAULT).expect("the default identity").clone();
        let placeholder = NodeIdentity::generate(name, Identity::DEFAULT);
        let auth =
            crate::app::upstream_auth(config, Some(placeholder.acl_user.clone()), Some(placeholder.password.clone()))
                .map_err(|e| format!("ERR slotway: cannot provision user '{name}': {e:#}"))?;
        let ctx = ConnectContext::new(auth, default.metrics.clone(), default.resolve.clone(), default.health);
        let identity =
            self.upstreams.add_identity(ctx).ok_or_else(|| "ERR slotway: too many upstream users".to_string())?;
        let id = NodeIdentity { identity, ..placeholder };
        self.provisioner.add_identity(id.clone());
        Ok(id)
    }

    /// Writes the provisioned users of `users` to every node. A node that refuses fails the command (nothing
    /// changes in slotway); unreachable nodes get the users from the background check once they are back.
    async fn provision(&self, users: &Users) -> Result<(), String> {
        match self.provisioner.reprovision(users).await {
            Ok(_) => Ok(()),
            Err(e) if e.refused => Err(format!("ERR slotway: the nodes refused the user's cluster ACL user: {e}")),
            Err(e) => {
                tracing::warn!(errors = %e, "ACL SETUSER/DELUSER: some nodes could not be provisioned yet; retrying");
                Ok(())
            }
        }
    }
}
