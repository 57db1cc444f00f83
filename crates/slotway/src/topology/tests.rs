//! The refresh's choice between nodes' views, on replies captured from redis-server 7.0.15 (a 3+3 cluster on
//! 127.0.0.1:22821-22826, before and after `CLUSTER FAILOVER` on 22826, the replica of 22821; see
//! `cluster/testdata/README.md`).
use super::*;
use crate::cluster::parse_cluster_shards;
use resp::Limits;

fn fixture(bytes: &'static [u8]) -> Value {
    let buf = Bytes::from_static(bytes);
    let (value, used) = Value::parse(&buf, &Limits::default()).expect("valid RESP").expect("complete reply");
    assert_eq!(used, buf.len(), "one reply per fixture");
    value
}

/// A node's view as `fetch_view` builds it from its two replies.
fn view(shards: &'static [u8], nodes: &'static [u8]) -> View {
    let shards = parse_cluster_shards(&fixture(shards), "127.0.0.1").unwrap();
    let epochs = parse_cluster_nodes_epochs(&fixture(nodes)).unwrap();
    let epoch = view_epoch(&shards, &epochs);
    View { shards, epoch }
}

/// What a node that missed the failover (cut off from the majority) still reports.
fn stale() -> View {
    view(
        include_bytes!("../cluster/testdata/epoch-before-shards-resp2.resp"),
        include_bytes!("../cluster/testdata/epoch-before-nodes-resp2.resp"),
    )
}

/// What the majority reports after the failover.
fn fresh() -> View {
    view(
        include_bytes!("../cluster/testdata/epoch-after-shards-resp2.resp"),
        include_bytes!("../cluster/testdata/epoch-after-nodes-resp2.resp"),
    )
}

fn owner_of_slot_0(v: &View) -> u16 {
    SlotMap::new(v.shards.clone())
        .shard(SlotMap::new(v.shards.clone()).shard_of(Slot::new(0).unwrap()).unwrap())
        .primary
        .addr
        .port
}

#[test]
fn view_epoch_is_the_highest_epoch_among_slot_owners() {
    let epochs =
        parse_cluster_nodes_epochs(&fixture(include_bytes!("../cluster/testdata/epoch-after-nodes-resp2.resp")))
            .unwrap();
    assert_eq!(epochs.len(), 6);
    // The demoted primary keeps its id; the promoted replica got epoch 7, above everything the cluster had.
    assert_eq!(epochs.get("7162c34427dc3ee3790392e18810713a6a1faa28"), Some(&7));
    assert_eq!(epochs.get("b87dea848d18b66527b87fa8042457ebfa7df92c"), Some(&7));
    assert_eq!(stale().epoch, Some(3));
    assert_eq!(fresh().epoch, Some(7));
    assert_eq!(owner_of_slot_0(&stale()), 22821);
    assert_eq!(owner_of_slot_0(&fresh()), 22826);
    // No epochs at all, or none for the slot owners: unknown.
    assert_eq!(view_epoch(&fresh().shards, &HashMap::new()), None);
}

#[test]
fn nodes_parser_skips_garbage_and_never_panics() {
    let text = "abc 127.0.0.1:1@2 master - 0 0 5 connected 0-10\n\nshort line\nid2 a b c d e notanumber f\n";
    let epochs = parse_cluster_nodes_epochs(&Value::bulk(text.as_bytes().to_vec())).unwrap();
    assert_eq!(epochs.len(), 1);
    assert_eq!(epochs.get("abc"), Some(&5));
    assert!(parse_cluster_nodes_epochs(&Value::Integer(3)).is_err());
    let verbatim = Value::Verbatim { format: *b"txt", text: Bytes::from_static(b"x h f - 0 0 9 connected\n") };
    assert_eq!(parse_cluster_nodes_epochs(&verbatim).unwrap().get("x"), Some(&9));
}

#[test]
fn the_newest_view_wins_whoever_answers_first() {
    let answers = [stale(), fresh(), stale()];
    let epochs: Vec<Option<u64>> = answers.iter().map(|v| v.epoch).collect();
    // Even with the map still at the old epoch, and the stale node first to answer.
    assert_eq!(choose_view(Some(3), &epochs), ViewChoice::Take(1));
    assert_eq!(choose_view(None, &epochs), ViewChoice::Take(1));
    let ViewChoice::Take(i) = choose_view(Some(3), &epochs) else { unreachable!() };
    assert_eq!(owner_of_slot_0(&answers[i]), 22826);
}

#[test]
fn a_stale_node_alone_cannot_roll_the_map_back() {
    // The map is at epoch 7 (after the failover); the only node that answers still reports epoch 3.
    assert_eq!(choose_view(Some(7), &[stale().epoch]), ViewChoice::Older { best: 0 });
    assert_eq!(choose_view(Some(7), &[stale().epoch, None]), ViewChoice::Older { best: 0 });
    // A view as new as the map's is taken (it may differ in replicas or health).
    assert_eq!(choose_view(Some(7), &[fresh().epoch]), ViewChoice::Take(0));
}

#[test]
fn ties_go_to_the_first_answer_and_unknown_epochs_rank_last() {
    assert_eq!(choose_view(Some(5), &[Some(5), Some(5)]), ViewChoice::Take(0));
    assert_eq!(choose_view(Some(5), &[Some(4), Some(6), Some(6)]), ViewChoice::Take(1));
    assert_eq!(choose_view(Some(5), &[None, Some(5)]), ViewChoice::Take(1));
    // Servers that give no epochs (CLUSTER SLOTS only, CLUSTER NODES refused): the first answer, never "older".
    assert_eq!(choose_view(Some(5), &[None, None]), ViewChoice::Take(0));
    assert_eq!(choose_view(None, &[None]), ViewChoice::Take(0));
}

#[test]
fn older_views_are_taken_only_after_a_long_run_of_them() {
    let t0 = Instant::now();
    let mut guard = StaleGuard::default();
    // Many refreshes in quick succession are not enough.
    for i in 0..10 {
        assert!(!guard.allow_older(t0 + Duration::from_millis(100 * i)));
    }
    assert!(guard.allow_older(t0 + STALE_GRACE));
    // A newer answer in between starts the count again.
    guard.reset();
    assert!(!guard.allow_older(t0 + STALE_GRACE * 3));
    assert!(!guard.allow_older(t0 + STALE_GRACE * 5));
    assert!(guard.allow_older(t0 + STALE_GRACE * 5));
}

#[test]
fn topology_change_log_says_what_moved() {
    let changes = describe_changes(&stale().shards, &fresh().shards);
    // (The captured views also differ in replicas' gossiped `loading` health, which is logged too.)
    assert_eq!(changes[0], "slots 0-5460: 127.0.0.1:22821 -> 127.0.0.1:22826", "{changes:?}");
    for line in ["127.0.0.1:22826: replica -> primary", "127.0.0.1:22821: primary -> replica"] {
        assert!(changes.iter().any(|c| c == line), "{line:?} missing from {changes:?}");
    }
    assert_eq!(changes.iter().filter(|c| c.starts_with("slot")).count(), 1, "{changes:?}");
    let mut gone = fresh().shards;
    gone.retain(|s| s.primary.addr.port != 22823);
    let changes = describe_changes(&fresh().shards, &gone);
    assert!(changes.contains(&"slots 10923-16383: 127.0.0.1:22823 -> nobody".to_string()), "{changes:?}");
    assert!(changes.contains(&"127.0.0.1:22823 (primary) left".to_string()), "{changes:?}");
    assert!(changes.contains(&"127.0.0.1:22825 (replica) left".to_string()), "{changes:?}");
    let back = describe_changes(&gone, &fresh().shards);
    assert!(back.contains(&"127.0.0.1:22823 joined as primary (online)".to_string()), "{back:?}");
}

/// A pool of three shards without connections (no primary pools: as if none had a primary yet).
fn pool_topology(problems: Vec<Option<Arc<str>>>) -> (Topology, Arc<crate::ring::Ring>) {
    use crate::ring::{CharSign, Distribution, KeyHash, Ring, RingServer, RingSpec};
    let ring = Arc::new(Ring::new(RingSpec {
        distribution: Distribution::Ketama,
        hash: KeyHash::Fnv1a_64,
        sign: CharSign::Signed,
        hash_tag: Some(*b"{}"),
        servers: ["a", "b", "c"].iter().map(|n| RingServer { name: n.as_bytes().to_vec(), weight: 1 }).collect(),
    }));
    let shard = |port| ShardInfo {
        primary: NodeInfo {
            id: None,
            addr: NodeAddr::new("127.0.0.1", port),
            ip: None,
            role: Role::Primary,
            health: Health::Online,
            replication_offset: None,
        },
        replicas: vec![],
        slots: vec![],
    };
    let topology = Topology {
        map: SlotMap::new(vec![shard(1), shard(2), shard(3)]),
        placement: Placement::Ring(ring.clone()),
        primaries: vec![None, None, None],
        replicas: vec![Vec::new(); 3],
        version: 1,
        problems,
    };
    (topology, ring)
}

#[test]
fn a_pools_token_is_the_keys_group() {
    let (topology, ring) = pool_topology(vec![None, Some(Arc::from("no server answers")), None]);
    for key in ["user:1", "user:2", "{tag}x", "x{tag}", ""] {
        let token = topology.placement.token(key.as_bytes());
        assert_eq!(topology.group_of(token), Some(ring.locate(key.as_bytes())), "{key}");
    }
    assert_eq!(topology.placement.token(b"{tag}x"), topology.placement.token(b"x{tag}"));
    assert!(topology.placement.standalone());
    assert_eq!(topology.placement.cross_error(), CROSSSHARD);
    assert_eq!(Placement::Slots.cross_error(), crate::dispatch::CROSSSLOT);
    // Errors and /health name the shard.
    let g1 = Slot::new(1);
    assert_eq!(topology.unserved_error(g1), "ERR slotway: shard 'b' has no primary: no server answers");
    assert_eq!(topology.unserved_error(Slot::new(0)), "ERR slotway: shard 'a' has no primary yet");
    let health = topology.health_problem().unwrap();
    assert!(health.contains("shard 'b' has no primary: no server answers"), "{health}");
    // An ejected shard serves no keys: it leaves the fan-out and /health.
    assert_eq!(topology.serving_groups().collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(ring.set_ejected(1, true));
    assert_eq!(topology.serving_groups().collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(crate::dispatch::fanout::shard_slots(&topology).len(), 2);
    assert!(!topology.health_problem().unwrap().contains("'b'"));
    // A pool's channels (their subscriptions and PUBLISH) are placed by the ring like keys.
    let channel = b"news";
    assert_eq!(
        crate::dispatch::channel_placement(&topology.placement, channel),
        crate::dispatch::ChannelPlacement::Slot(topology.placement.token(channel))
    );
}
