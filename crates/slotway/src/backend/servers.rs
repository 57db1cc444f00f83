//! A static primary/replica set (`--server`): slotway asks every server for its ROLE and decides itself.
//!
//! - The primary is the one server that says `master`; the replicas are the servers that say they are its replicas
//!   with the link up and that it lists among its own (so their offsets, hence their lag, are known).
//! - Two servers saying `master` (an old primary back before it was re-pointed, or a failover half done) is a
//!   conflict: there is no primary until only one says so. Writes wait (within the retry deadline) and then fail
//!   with an error naming both, instead of going to either one: split-brain writes are never made.
//! - Every probe opens a new connection, so a host name is resolved again each time: a DNS name that moves to a new
//!   primary (a managed service's primary endpoint) is followed.
use super::probe::{self, NodeRole};
use super::{GroupView, Member, ResolveFailure};
use crate::cluster::NodeAddr;
use crate::upstream::ConnectContext;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct StaticGroup {
    servers: Vec<NodeAddr>,
    ctx: Arc<ConnectContext>,
    timeout: Duration,
}

impl StaticGroup {
    pub fn new(servers: Vec<NodeAddr>, ctx: Arc<ConnectContext>, timeout: Duration) -> StaticGroup {
        StaticGroup { servers, ctx, timeout }
    }

    pub fn servers(&self) -> &[NodeAddr] {
        &self.servers
    }

    /// Asks every server for its ROLE (at once) and decides who the primary is.
    pub async fn resolve(&self) -> Result<GroupView, ResolveFailure> {
        let probes = self.servers.iter().map(|s| async move {
            let role = probe::call(s, &self.ctx, &[&[b"ROLE"]], self.timeout).await;
            let ips = probe::resolve_ips(&s.host).await;
            (role, ips)
        });
        let answers = futures_join_all(probes).await;
        let mut roles = Vec::with_capacity(answers.len());
        let mut reasons = Vec::new();
        let mut fatal = true;
        for (server, (answer, ips)) in self.servers.iter().zip(answers) {
            match answer
                .map_err(|e| (e.is_fatal(), e.to_string()))
                .and_then(|r| probe::parse_role(&r[0]).map_err(|e| (false, format!("ROLE refused: {e}"))))
            {
                Ok(role) => {
                    fatal = false;
                    roles.push(Answer { addr: server.clone(), ips, role: Ok(role) });
                }
                Err((is_fatal, e)) => {
                    fatal &= is_fatal;
                    reasons.push(format!("{server}: {e}"));
                    roles.push(Answer { addr: server.clone(), ips, role: Err(e) });
                }
            }
        }
        if roles.iter().all(|a| a.role.is_err()) {
            return Err(ResolveFailure { reasons, fatal });
        }
        Ok(decide(&roles))
    }
}

/// One server's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub addr: NodeAddr,
    /// What its host name resolves to now (to match the IPs nodes report each other by).
    pub ips: Vec<IpAddr>,
    pub role: Result<NodeRole, String>,
}

/// Whether `host` (as a node reports it) names the server `a`.
fn names(host: &str, a: &Answer) -> bool {
    *a.addr.host == *host || host.parse::<IpAddr>().is_ok_and(|ip| a.ips.contains(&ip))
}

/// The group from every server's ROLE (pure, so it is tested on its own).
pub fn decide(answers: &[Answer]) -> GroupView {
    let source = "ROLE of every server".to_string();
    let masters: Vec<&Answer> = answers.iter().filter(|a| matches!(&a.role, Ok(r) if r.is_master())).collect();
    let primary = match masters.as_slice() {
        [one] => *one,
        [] => {
            let each: Vec<String> = answers
                .iter()
                .map(|a| match &a.role {
                    Ok(r) => format!("{}: {}", a.addr, r.describe()),
                    Err(e) => format!("{}: {e}", a.addr),
                })
                .collect();
            return GroupView {
                problem: Some(format!("no server says it is the primary ({})", each.join("; "))),
                source,
                ..GroupView::default()
            };
        }
        several => {
            let list: Vec<String> = several.iter().map(|a| a.addr.to_string()).collect();
            return GroupView {
                problem: Some(format!(
                    "{} all claim to be the primary; writes wait until only one does (re-point the others with \
                     REPLICAOF)",
                    list.join(" and ")
                )),
                source,
                ..GroupView::default()
            };
        }
    };
    let Ok(NodeRole::Master { offset, replicas: attached }) = &primary.role else { unreachable!("a master") };
    let mut replicas = Vec::new();
    for a in answers {
        let Ok(NodeRole::Replica { master_host, master_port, state, .. }) = &a.role else { continue };
        if state != "connected" || *master_port != primary.addr.port || !names(master_host, primary) {
            continue;
        }
        // The primary must list it too: that is where its acknowledged offset (and so its lag) comes from.
        let acked = attached.iter().find(|(ip, port, _)| *port == a.addr.port && names(ip, a)).map(|r| r.2);
        if let Some(acked) = acked {
            replicas.push(Member { addr: a.addr.clone(), offset: Some(acked) });
        }
    }
    replicas.sort_by(|x, y| x.addr.cmp(&y.addr));
    GroupView {
        primary: Some(Member { addr: primary.addr.clone(), offset: Some(*offset) }),
        replicas,
        problem: None,
        source,
        role_mismatches: 0,
    }
}

/// Runs the futures concurrently and returns their outputs in order.
pub(crate) async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut futures: Vec<Option<_>> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(port: u16, role: Result<NodeRole, String>) -> Answer {
        Answer { addr: NodeAddr::new("127.0.0.1", port), ips: vec!["127.0.0.1".parse().unwrap()], role }
    }

    fn master(replicas: &[u16]) -> Result<NodeRole, String> {
        Ok(NodeRole::Master { offset: 100, replicas: replicas.iter().map(|&p| ("127.0.0.1".into(), p, 90)).collect() })
    }

    fn replica_of(port: u16, state: &str) -> Result<NodeRole, String> {
        Ok(NodeRole::Replica { master_host: "127.0.0.1".into(), master_port: port, state: state.into(), offset: 90 })
    }

    #[test]
    fn the_one_master_and_its_attached_replicas() {
        let view = decide(&[
            answer(1, replica_of(2, "connected")),
            answer(2, master(&[1, 3])),
            answer(3, replica_of(2, "sync")),
            answer(4, Err("cannot connect".into())),
        ]);
        assert_eq!(view.primary, Some(Member { addr: NodeAddr::new("127.0.0.1", 2), offset: Some(100) }));
        // 3 is still syncing; 4 is down.
        assert_eq!(view.replicas, vec![Member { addr: NodeAddr::new("127.0.0.1", 1), offset: Some(90) }]);
        assert_eq!(view.problem, None);
        // A replica the primary doesn't list (its link just dropped) serves no reads.
        let view = decide(&[answer(1, replica_of(2, "connected")), answer(2, master(&[]))]);
        assert!(view.replicas.is_empty());
        // One that follows another node doesn't either.
        let view = decide(&[answer(1, replica_of(9, "connected")), answer(2, master(&[1]))]);
        assert!(view.replicas.is_empty());
    }

    #[test]
    fn two_masters_are_a_conflict_naming_both() {
        let view = decide(&[answer(1, master(&[3])), answer(2, master(&[])), answer(3, replica_of(1, "connected"))]);
        assert_eq!(view.primary, None);
        let problem = view.problem.unwrap();
        assert!(problem.contains("127.0.0.1:1 and 127.0.0.1:2 all claim to be the primary"), "{problem}");
    }

    #[test]
    fn no_master_says_what_each_server_is() {
        let view = decide(&[answer(1, replica_of(2, "connect")), answer(2, Err("connection refused".into()))]);
        assert_eq!(view.primary, None);
        let problem = view.problem.unwrap();
        assert!(problem.contains("127.0.0.1:1: replica of 127.0.0.1:2 (connect)"), "{problem}");
        assert!(problem.contains("127.0.0.1:2: connection refused"), "{problem}");
    }

    #[test]
    fn host_names_match_the_ips_nodes_report() {
        let named = |port, role| Answer {
            addr: NodeAddr::new("redis-a.example", port),
            ips: vec!["10.0.0.5".parse().unwrap()],
            role,
        };
        let replica = Answer {
            addr: NodeAddr::new("redis-b.example", 6379),
            ips: vec!["10.0.0.6".parse().unwrap()],
            role: Ok(NodeRole::Replica {
                master_host: "10.0.0.5".into(),
                master_port: 6380,
                state: "connected".into(),
                offset: 5,
            }),
        };
        let primary = named(6380, Ok(NodeRole::Master { offset: 7, replicas: vec![("10.0.0.6".into(), 6379, 5)] }));
        let view = decide(&[primary, replica]);
        assert_eq!(view.replicas.len(), 1);
        assert_eq!(&*view.replicas[0].addr.host, "redis-b.example");
    }
}
