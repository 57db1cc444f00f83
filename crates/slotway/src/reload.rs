//! Reloading the configuration of a running slotway (SIGHUP, `SLOTWAY RELOAD`).
//!
//! Everything is read and checked first — the file, certificates and keys, users' rules against the nodes'
//! command table, and a login with every upstream credential that changed — and only then applied, each part
//! swapped whole: upstream credentials (new connections use them), client TLS, replica reads, the log level,
//! and last the live settings (configuration and users) that sessions pick up before their next command. A
//! problem anywhere changes nothing. Settings that can't change in a running process are listed as needing a
//! restart and keep their running values; the rest still applies.
use crate::command::CommandTable;
use crate::config::{Config, UpstreamCredentials};
use crate::downstream::ClientTls;
use crate::live::{restart_needed, running_config, ConfigSource, Live, LiveSettings};
use crate::logging::LogControl;
use crate::metrics::Metrics;
use crate::provision::{NodeIdentity, Provisioner};
use crate::topology::TopologyManager;
use crate::upstream::connect::connect;
use crate::upstream::{ConnectContext, Identity, UpstreamAuth};
use std::sync::Arc;

pub(crate) struct Reloader {
    pub source: ConfigSource,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub log: LogControl,
    pub client_tls: Option<Arc<ClientTls>>,
    pub topology: Arc<TopologyManager>,
    /// The nodes' command table users' rules are compiled against (standalone mode).
    pub table: Option<Arc<CommandTable>>,
    /// The cluster credentials slotway's users map to, and their identity in the upstream registry.
    pub identities: Vec<(UpstreamCredentials, Identity)>,
    /// The `provision_upstream` users' node identities made at start (a user provisioned later needs a restart).
    pub provisioned: Vec<NodeIdentity>,
    /// Keeps the provisioned users' rules on the nodes in step with slotway's users.
    pub provisioner: Arc<Provisioner>,
}

/// What happens to one mapped cluster user's credentials.
enum IdentityPlan {
    /// Same credentials as an identity already has.
    Keep(Identity),
    /// A cluster user slotway already logs in as, with a new password (rotated): same identity, new auth.
    Rotate(Identity),
    /// A cluster user not mapped before: a new identity.
    Add,
}

impl Reloader {
    /// Reloads; `why` names the trigger in the log. Ok: a summary for the operator; Err: every problem, and
    /// nothing changed. Counted in `config_reloads_ok` / `config_reloads_failed`.
    pub async fn reload(&mut self, why: &str) -> Result<String, String> {
        let result = self.try_reload().await;
        match &result {
            Ok(summary) => {
                Metrics::incr(&self.metrics.config_reloads_ok);
                tracing::info!(trigger = why, "configuration reloaded: {summary}");
            }
            Err(problems) => {
                Metrics::incr(&self.metrics.config_reloads_failed);
                tracing::error!(trigger = why, "configuration reload failed, nothing changed: {problems}");
            }
        }
        result
    }

    async fn try_reload(&mut self) -> Result<String, String> {
        let (loaded_config, loaded) = self.source.load(&|k| std::env::var(k).ok()).map_err(|e| e.0.join("; "))?;
        let running = self.live.load();
        let restart = restart_needed(&running.config, &loaded_config);
        let next = running_config(&running.config, loaded_config);

        // 1. Check everything; nothing changes yet.
        let tls_state = match (&self.client_tls, &next.listen.tls) {
            (Some(_), Some(settings)) => {
                Some(ClientTls::prepare(settings.clone()).map_err(|e| format!("client TLS: {e}"))?)
            }
            _ => None,
        };
        let default_auth = auth_for(&next, next.upstream.user.clone(), next.upstream.password.clone())?;
        let upstreams = self.topology.upstreams().clone();
        let default_ctx = upstreams.context(Identity::DEFAULT).expect("the default identity").clone();
        let default_changed = {
            let cur = default_ctx.auth.load();
            cur.user != default_auth.user || cur.password != default_auth.password
        };
        let wanted = distinct_credentials(&next);
        let plans: Vec<(UpstreamCredentials, IdentityPlan)> =
            wanted.iter().map(|c| (c.clone(), self.plan(c, &wanted))).collect();
        let mut to_check: Vec<(String, UpstreamAuth)> = Vec::new();
        if default_changed {
            let name = default_auth.user.clone().unwrap_or_else(|| "default".into());
            to_check.push((
                format!("[upstream] user '{name}'"),
                auth_for(&next, default_auth.user.clone(), default_auth.password.clone())?,
            ));
        }
        for (creds, plan) in &plans {
            if !matches!(plan, IdentityPlan::Keep(_)) {
                let what = format!("upstream user '{}'", creds.user);
                to_check.push((what, auth_for(&next, Some(creds.user.clone()), Some(creds.password.clone()))?));
            }
        }
        self.check_logins(to_check, &default_ctx).await?;
        let compiled = match &self.table {
            Some(table) if !next.users.is_empty() => {
                // Identities for the users: existing ones now, new ones numbered as they will be added.
                let mut ids = Vec::new();
                let mut next_index = upstreams.identities();
                for (creds, plan) in &plans {
                    let id = match plan {
                        IdentityPlan::Keep(id) | IdentityPlan::Rotate(id) => *id,
                        IdentityPlan::Add => {
                            next_index += 1;
                            Identity::new(u16::try_from(next_index - 1).map_err(|_| "too many upstream users")?)
                        }
                    };
                    ids.push((creds.clone(), id));
                }
                Some((crate::app::compile_users(&next, table, &ids, &self.provisioned)?, ids))
            }
            _ => None,
        };

        // 2. Apply.
        let mut identities = Vec::new();
        for (creds, plan) in plans {
            let auth = auth_for(&next, Some(creds.user.clone()), Some(creds.password.clone()))?;
            let id = match plan {
                IdentityPlan::Keep(id) | IdentityPlan::Rotate(id) => {
                    upstreams.context(id).expect("identities are never removed").auth.store(Arc::new(auth));
                    id
                }
                IdentityPlan::Add => upstreams
                    .add_identity(ConnectContext::new(
                        auth,
                        self.metrics.clone(),
                        default_ctx.resolve.clone(),
                        default_ctx.health,
                    ))
                    .ok_or("too many upstream users")?,
            };
            identities.push((creds, id));
        }
        // Identities no user maps to any more keep their (old) credentials for their idle connections; a
        // TLS change still reaches them, so a renewed CA applies to every new connection.
        for (creds, id) in &self.identities {
            if !identities.iter().any(|(_, i)| i == id) {
                let auth = auth_for(&next, Some(creds.user.clone()), Some(creds.password.clone()))?;
                upstreams.context(*id).expect("identities are never removed").auth.store(Arc::new(auth));
                identities.push((creds.clone(), *id));
            }
        }
        if let Some((_, ids)) = &compiled {
            debug_assert!(ids.iter().all(|(c, id)| identities.iter().any(|(c2, id2)| c == c2 && id == id2)));
        }
        self.identities = identities;
        default_ctx.auth.store(Arc::new(default_auth));
        if let (Some(tls), Some(state)) = (&self.client_tls, tls_state) {
            let cert = state.settings.cert.display().to_string();
            tls.install(state);
            tracing::info!(cert = %cert, "client TLS certificates reloaded");
        }
        self.topology.set_replica_reads(crate::app::replica_reads(&next));
        if let Err(e) = self.log.set_level(&next.log_level) {
            // Validated with the config, so this is not expected; the rest is applied all the same.
            tracing::warn!(error = %e, "cannot change the log level");
        }
        let users = match compiled {
            Some((users, _)) => Some(Arc::new(match &running.users {
                Some(old) => old.replaced_by(users, next.auth_max_failures_per_minute),
                None => crate::auth::Users::new(users, next.auth_max_failures_per_minute),
            })),
            None => None,
        };
        let hash = loaded.hash.clone();
        let next = Arc::new(next);
        let mut provision_restart = Vec::new();
        // The nodes' provisioned users follow the new rules (and a user no longer provisioned loses this
        // process's password) before clients run commands under them.
        let provisioning = !self.provisioner.is_empty() || next.users.iter().any(|u| u.provision_upstream);
        if let (true, Some(users)) = (provisioning, &users) {
            match self.provisioner.reprovision(users).await {
                Ok(added) => provision_restart = added,
                Err(e) => tracing::warn!(errors = %e, "reload: some nodes could not be re-provisioned yet; retrying"),
            }
        }
        let _ = self.live.update(|_| {
            let mut settings = LiveSettings::new(next, users, loaded);
            settings.restart_needed = restart.clone();
            Ok::<_, std::convert::Infallible>(settings)
        });
        let mut summary = format!("config sha256 {}", &hash[..16]);
        if !restart.is_empty() {
            summary.push_str(&format!("; needs a restart (running values kept): {}", restart.join(", ")));
            tracing::warn!(settings = %restart.join(", "), "changed settings need a restart to take effect");
        }
        if !provision_restart.is_empty() {
            let names = provision_restart.join(", ");
            summary.push_str(&format!("; provision_upstream of new users needs a restart: {names}"));
            tracing::warn!(users = %names, "users newly provisioned need a restart to get node connections of their own");
        }
        Ok(summary)
    }

    /// How the identity for `creds` is found: the same credentials, else the same cluster user whose old
    /// credentials no user wants any more (a rotated password), else a new identity.
    fn plan(&self, creds: &UpstreamCredentials, wanted: &[UpstreamCredentials]) -> IdentityPlan {
        if let Some((_, id)) = self.identities.iter().find(|(c, _)| c == creds) {
            return IdentityPlan::Keep(*id);
        }
        match self.identities.iter().find(|(c, _)| c.user == creds.user && !wanted.contains(c)) {
            Some((_, id)) => IdentityPlan::Rotate(*id),
            None => IdentityPlan::Add,
        }
    }

    /// Logs in once with each changed credential (on some primary): a password the nodes refuse fails the reload
    /// instead of failing every new connection later. A node that can't be reached only gets a warning.
    async fn check_logins(&self, checks: Vec<(String, UpstreamAuth)>, template: &ConnectContext) -> Result<(), String> {
        let Some(addr) = self.topology.load().any_primary(0).map(|p| p.addr.clone()) else { return Ok(()) };
        let mut problems = Vec::new();
        for (what, auth) in checks {
            let ctx = ConnectContext::new(auth, self.metrics.clone(), template.resolve.clone(), None);
            match connect(&addr, &ctx, resp::encode::Protocol::Resp2, false, 0).await {
                Ok(_) => {}
                Err(e) if e.is_fatal() => problems.push(format!("{what}: cannot log in to the cluster ({addr}): {e}")),
                Err(e) => tracing::warn!(node = %addr, error = %e, "reload: cannot check {what}"),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The distinct cluster credentials `config`'s users map to, in order of first mention.
fn distinct_credentials(config: &Config) -> Vec<UpstreamCredentials> {
    let mut out: Vec<UpstreamCredentials> = Vec::new();
    for creds in config.users.iter().filter_map(|u| u.upstream.as_ref()) {
        if !out.contains(creds) {
            out.push(creds.clone());
        }
    }
    out
}

fn auth_for(
    config: &Config,
    user: Option<String>,
    password: Option<crate::config::Secret>,
) -> Result<UpstreamAuth, String> {
    crate::app::upstream_auth(config, user, password).map_err(|e| format!("{e:#}"))
}
