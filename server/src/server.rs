//! `logbook serve`: opens (or bootstraps) a member's data directory, starts
//! the Raft thread, the peer transport and the client and peer gRPC servers,
//! and runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use logbook_api::etcdserverpb::auth_server::AuthServer;
use logbook_api::etcdserverpb::cluster_server::ClusterServer;
use logbook_api::etcdserverpb::kv_server::KvServer;
use logbook_api::etcdserverpb::lease_server::LeaseServer;
use logbook_api::etcdserverpb::maintenance_server::MaintenanceServer;
use logbook_api::etcdserverpb::watch_server::WatchServer;
use logbook_api::logbookpb::internal_request::Request as Internal;
use logbook_api::logbookpb::peer_server::PeerServer;
use logbook_api::logbookpb::{MemberAttributes, RaftApplyState, StoredMember};
use logbook_engine::Engine;
use logbook_wal::Wal;
use parking_lot::Mutex;
use prost::Message as _;
use protobuf::Message as _;
use raft::RawNode;
use raft::prelude::{ConfState, Entry, HardState};
use tokio::sync::watch;

use crate::auth_service::AuthService;
use crate::cluster_service::ClusterService;
use crate::config::{Config, ServeArgs};
use crate::engine_cell::EngineCell;
use crate::error::{Error, Result};
use crate::kv_service::KvService;
use crate::lease_service::LeaseService;
use crate::maintenance_service::MaintenanceService;
use crate::membership::{MEMBERS_BUCKET, load_members, member_key};
use crate::node::{APPLY_STATE_KEY, NodeMsg, RAFT_BUCKET, RaftLoop, Shared};
use crate::peer_service::PeerService;
use crate::raft_storage::{ApplyState, RaftStorage};
use crate::transport::{LocalIdentity, MAX_PEER_MESSAGE, Transport};
use crate::watch_hub::{HeaderSource, WatchHub};
use crate::watch_service::WatchService;

/// etcd lets a gRPC message exceed --max-request-bytes by this much, for
/// the envelope around the payload.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How often synced watchers that asked for progress notifications get one
/// (etcd's default).
const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// The engine bucket holding cluster-wide facts fixed at bootstrap.
pub const CLUSTER_BUCKET: &str = "cluster";
pub const CLUSTER_ID_KEY: &[u8] = b"id";
/// This member's own ID (derived from flags, or assigned by MemberAdd). The one
/// member-local fact in the engine: a snapshot from the leader carries the leader's,
/// which the installer replaces (see `RaftLoop::install_snapshot`).
pub const MEMBER_ID_KEY: &[u8] = b"member_id";

/// Parses the flags, sets up logging and runs the member until a signal.
pub fn run(args: ServeArgs) -> Result<()> {
    let cfg = args.into_config()?;
    init_logging(&cfg.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("logbook-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    runtime.block_on(serve(cfg))
}

fn init_logging(level: &str) {
    let level = match level {
        "panic" | "fatal" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn create_dir(path: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Writes the initial members and configuration into a new member's engine.
///
/// A member of a new cluster starts with every initial member as a voter. A
/// member joining a running cluster (`--initial-cluster-state existing`,
/// after `member add`) starts with the others as voters and itself in no
/// role: the leader's log (or a snapshot) brings the change that added it.
fn bootstrap(cfg: &Config, engine: &Engine, joined: Option<&[StoredMember]>) -> Result<()> {
    let members: Vec<StoredMember> = match joined {
        Some(members) => members.to_vec(),
        None => cfg
            .initial_cluster
            .iter()
            .map(|m| StoredMember {
                id: m.id,
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            })
            .collect(),
    };
    let others = members.iter().filter(|m| joined.is_none() || m.id != cfg.member_id);
    let voters: Vec<u64> = others.clone().filter(|m| !m.is_learner).map(|m| m.id).collect();
    let learners: Vec<u64> = others.filter(|m| m.is_learner).map(|m| m.id).collect();
    let conf_state = ConfState::from((voters, learners));
    let mut txn = engine.write(0);
    for stored in &members {
        txn.meta_put(MEMBERS_BUCKET, &member_key(stored.id), &stored.encode_to_vec());
    }
    let state = RaftApplyState {
        term: 0,
        conf_state: conf_state.write_to_bytes().expect("conf states encode").into(),
    };
    txn.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &state.encode_to_vec());
    txn.meta_put(CLUSTER_BUCKET, CLUSTER_ID_KEY, &cfg.cluster_id.to_be_bytes());
    txn.meta_put(CLUSTER_BUCKET, MEMBER_ID_KEY, &cfg.member_id.to_be_bytes());
    txn.commit();
    engine.commit()?;
    tracing::info!(
        cluster_id = format!("{:x}", cfg.cluster_id),
        member_id = format!("{:x}", cfg.member_id),
        members = cfg.initial_cluster.len(),
        "bootstrapped a new cluster member"
    );
    Ok(())
}

/// Asks the running members for the cluster ID and the member list, and
/// finds this member's ID in it by its peer URLs (MemberAdd chose it).
async fn join_existing(cfg: &mut Config) -> Result<Vec<StoredMember>> {
    use logbook_api::logbookpb::HelloRequest;
    use logbook_api::logbookpb::peer_client::PeerClient;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for m in cfg.initial_cluster.iter().filter(|m| m.id != cfg.member_id) {
            for url in &m.peer_urls {
                let Ok(ch) = cfg.peer_dialer.connect(url).await else { continue };
                if let Ok(resp) = PeerClient::new(ch)
                    .hello(HelloRequest { cluster_id: 0, member_id: cfg.member_id })
                    .await
                {
                    let resp = resp.into_inner();
                    let mut mine = cfg.advertise_peer_urls.clone();
                    mine.sort();
                    let me = resp
                        .members
                        .iter()
                        .find(|m| {
                            let mut theirs = m.peer_urls.clone();
                            theirs.sort();
                            theirs == mine
                        })
                        .cloned();
                    let Some(me) = me else {
                        return Err(Error::Config(format!(
                            "--initial-cluster-state existing: the cluster has no member with peer URLs {}; add it first with `etcdctl member add`",
                            mine.join(",")
                        )));
                    };
                    cfg.member_id = me.id;
                    cfg.cluster_id = resp.cluster_id;
                    tracing::info!(cluster_id = format!("{:x}", resp.cluster_id), member_id = format!("{:x}", me.id), peer = %url, "joining an existing cluster");
                    let mut members = resp.members;
                    for m in &mut members {
                        if m.id == me.id {
                            m.name = cfg.name.clone();
                        }
                    }
                    return Ok(members);
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Config(
                "--initial-cluster-state existing: no member of --initial-cluster answered; is the cluster running and was this member added with `member add`?".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the Raft position the engine's data reflects.
fn load_apply_state(engine: &Engine) -> Result<ApplyState> {
    let bytes = engine
        .meta_get(RAFT_BUCKET, APPLY_STATE_KEY)
        .ok_or_else(|| Error::Internal("the engine has members but no raft apply state".into()))?;
    let stored = RaftApplyState::decode(bytes.as_slice())
        .map_err(|e| Error::Internal(format!("undecodable raft apply state: {e}")))?;
    let conf_state = ConfState::parse_from_bytes(&stored.conf_state)
        .map_err(|e| Error::Internal(format!("undecodable conf state: {e}")))?;
    Ok(ApplyState { index: engine.applied_index(), term: stored.term, conf_state })
}

async fn serve(mut cfg: Config) -> Result<()> {
    create_dir(cfg.db_path.parent().expect("db path has a parent"))?;
    create_dir(&cfg.wal_dir)?;
    let engine_options = logbook_engine::Options::default();
    let engine = Engine::open(&cfg.db_path, engine_options.clone())?;

    if load_members(&engine).is_empty() {
        let joined = if cfg.new_cluster { None } else { Some(join_existing(&mut cfg).await?) };
        bootstrap(&cfg, &engine, joined.as_deref())?;
    } else {
        tracing::info!(data_dir = %cfg.data_dir.display(), applied = engine.applied_index(), "restarting member");
    }
    if let Some(id) = engine.meta_get(CLUSTER_BUCKET, MEMBER_ID_KEY) {
        cfg.member_id = u64::from_be_bytes(
            id.as_slice()
                .try_into()
                .map_err(|_| Error::Internal("stored member ID is not 8 bytes".into()))?,
        );
    }
    let members = load_members(&engine);
    if !members.iter().any(|m| m.id == cfg.member_id) {
        return Err(Error::Config(format!(
            "member {:x} (from --name and peer URLs) is not a member of the cluster stored in {}",
            cfg.member_id,
            cfg.data_dir.display()
        )));
    }
    if let Some(id) = engine.meta_get(CLUSTER_BUCKET, CLUSTER_ID_KEY) {
        cfg.cluster_id = u64::from_be_bytes(
            id.as_slice()
                .try_into()
                .map_err(|_| Error::Internal("stored cluster ID is not 8 bytes".into()))?,
        );
    }

    // The Raft log: everything after what the engine reflects.
    let apply_state = load_apply_state(&engine)?;
    // pwrite + fdatasync rather than io_uring: the WAL has one write + fdatasync in flight
    // at a time, and io_uring hands every fdatasync to a kernel worker thread, two more
    // context switches per commit for nothing to overlap; the Raft thread also commits
    // small appends in place (`RaftLoop::commit_in_place`), where a plain system call is
    // the whole cost. One client on 3 members: 4.5 fewer switches per put on each member.
    let wal_options =
        logbook_wal::Options { backend: logbook_wal::Backend::Sync, ..Default::default() };
    let wal = Arc::new(Wal::open(&cfg.wal_dir, wal_options)?);
    let applied = apply_state.index;
    if wal.last_index() > applied && wal.first_index() > applied + 1 {
        return Err(Error::Internal(format!(
            "the WAL starts at {} but the engine needs entries from {}",
            wal.first_index(),
            applied + 1
        )));
    }
    if wal.last_index() < applied {
        // The engine is ahead of the log: a snapshot from the leader was installed (the
        // engine file replaced) and the member stopped before the WAL recorded the jump.
        // Raft's log continues after the engine's index, so the WAL must too, or the next
        // append would leave a gap.
        tracing::info!(
            wal_last = wal.last_index(),
            applied,
            "the WAL ends before the engine's applied index; moving its start past it"
        );
        wal.compact_prefix(applied + 1)?;
    }
    let apply_state = Arc::new(Mutex::new(apply_state));
    let engine = Arc::new(EngineCell::new(engine));
    let storage = RaftStorage::new(engine.clone(), apply_state.clone());
    if wal.last_index() > applied {
        let records = wal.read(applied + 1, wal.last_index() + 1)?;
        let mut entries = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let e = Entry::parse_from_bytes(r).map_err(|e| {
                Error::Internal(format!(
                    "WAL record {} is not a raft entry: {e}",
                    applied + 1 + i as u64
                ))
            })?;
            entries.push(e);
        }
        storage.append(&entries)?;
    }
    let whs = wal.hard_state();
    let hs = HardState {
        term: whs.term.max(storage.mem().rl().hard_state().term),
        vote: whs.vote,
        commit: whs.commit.max(applied).min(wal.last_index().max(applied)),
        ..Default::default()
    };
    storage.set_hard_state(hs);

    let raft_config = raft::Config {
        id: cfg.member_id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: 1,
        applied,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    };
    raft_config.validate()?;
    let node =
        RawNode::new(&raft_config, storage.clone(), &crate::raft_log::logger(cfg.member_id))?;

    let (inbox_tx, inbox_rx) =
        crate::inbox::inbox().map_err(|e| Error::io("creating the raft loop's doorbell", e))?;
    let shared =
        Arc::new(Shared::new(cfg.clone(), engine, engine_options, inbox_tx.clone(), apply_state));
    shared.lessor.rebuild(&shared.engine.get())?;
    shared.alarms.rebuild(&shared.engine.get());
    shared.auth.rebuild(&shared.engine.get())?;
    crate::node::resume_compaction(&shared.engine.get())?;
    let http_state = crate::http::HttpState { shared: shared.clone(), wal: Some(wal.clone()) };
    let transport = Transport::start(
        &tokio::runtime::Handle::current(),
        LocalIdentity {
            member_id: cfg.member_id,
            cluster_id: cfg.cluster_id,
            dialer: cfg.peer_dialer.clone(),
        },
        members.iter().map(|m| (m.id, m.peer_urls.clone())),
        inbox_tx.clone(),
    )
    .map_err(|e| Error::io("starting the peer links", e))?;
    let hub = WatchHub::new(
        shared.engine.clone(),
        HeaderSource { cluster_id: cfg.cluster_id, member_id: cfg.member_id },
        shared.term.clone(),
        cfg.max_request_bytes,
        WATCH_PROGRESS_INTERVAL,
    );
    let dispatcher = hub.start().map_err(|e| Error::io("starting the watch dispatcher", e))?;
    let raft_loop =
        RaftLoop::new(node, storage, wal, shared.clone(), inbox_rx, transport, hub.clone());
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || raft_loop.run())
        .map_err(|e| Error::io("starting the raft thread", e))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    for addr in &cfg.listen_peer {
        let svc = Arc::new(PeerService {
            member_id: cfg.member_id,
            cluster_id: cfg.cluster_id,
            name: cfg.name.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
            inbox: inbox_tx.clone(),
            shared: shared.clone(),
        });
        let router = tonic::transport::Server::builder().tcp_nodelay(true).add_service(
            PeerServer::from_arc(svc.clone())
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
        );
        let tls = cfg.tls_for(addr);
        let lane: crate::tls::LaneSink =
            Arc::new(move |conn| crate::lane::accept(conn, svc.clone()));
        servers
            .push(spawn_server(*addr, "peer", router, tls, Some(lane), shutdown_rx.clone()).await?);
    }
    let max_message = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    for addr in &cfg.listen_client {
        let router = crate::http::grpc_routes()
            .add_service(
                KvServer::new(KvService { shared: shared.clone() })
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                WatchServer::new(WatchService::new(hub.clone(), shared.clone()))
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                LeaseServer::new(LeaseService { shared: shared.clone() })
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                ClusterServer::new(ClusterService { shared: shared.clone() })
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                AuthServer::new(AuthService { shared: shared.clone() })
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                MaintenanceServer::new(MaintenanceService { shared: shared.clone() })
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            );
        let app = crate::http::client_router(http_state.clone(), router);
        let tls = cfg.tls_for(addr);
        servers.push(crate::http::serve(*addr, "client", app, tls, shutdown_rx.clone()).await?);
    }
    for addr in &cfg.listen_metrics {
        let app = crate::http::metrics_router(http_state.clone());
        let tls = cfg.tls_for(addr);
        servers.push(crate::http::serve(*addr, "metrics", app, tls, shutdown_rx.clone()).await?);
    }

    let publisher = tokio::spawn(publish(shared.clone()));
    let expirer = tokio::spawn(expire_leases(shared.clone()));

    let mut raft_done = tokio::task::spawn_blocking(move || raft_thread.join());
    let raft_finished_first = tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("received a shutdown signal; stopping");
            false
        }
        _ = &mut raft_done => {
            // Removed from the cluster, or a fatal storage error (logged).
            tracing::warn!("the raft loop has stopped; shutting the member down");
            true
        }
    };
    publisher.abort();
    expirer.abort();
    let _ = shutdown_tx.send(true);
    let _ = inbox_tx.send(NodeMsg::Stop);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    hub.stop();
    let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
    if !raft_finished_first {
        raft_done
            .await
            .map_err(|e| Error::Internal(format!("joining the raft thread: {e}")))?
            .map_err(|_| Error::Internal("the raft thread panicked".into()))?;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn spawn_server(
    addr: SocketAddr,
    what: &'static str,
    router: tonic::transport::server::Router,
    tls: Option<Arc<crate::tls::ServerTls>>,
    lane: Option<crate::tls::LaneSink>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listening for {what} traffic on {addr}"), e))?;
    match &tls {
        None => tracing::info!(address = %addr, "serving {what} traffic insecurely (plain http)"),
        Some(t) => tracing::info!(
            address = %addr,
            client_cert_auth = t.verifies_clients(),
            "serving {what} traffic securely (https)"
        ),
    }
    let incoming = crate::tls::incoming(listener, addr, what, tls, lane);
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, address = %addr, "{what} server failed");
        }
    }))
}

/// Announces this member's name and client URLs through Raft (as etcd
/// does), retrying until it is applied.
async fn publish(shared: Arc<Shared>) {
    let attrs = MemberAttributes {
        member_id: shared.cfg.member_id,
        name: shared.cfg.name.clone(),
        client_urls: shared.cfg.advertise_client_urls.clone(),
    };
    loop {
        if shared.leader().is_some() {
            match shared.propose(Internal::Publish(attrs.clone())).await {
                Ok(_) => {
                    tracing::info!(
                        name = %shared.cfg.name,
                        client_urls = ?shared.cfg.advertise_client_urls,
                        "published local member to cluster through raft; ready to serve client requests"
                    );
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// On the leader, proposes the revocation of every expired lease (a bounded
/// number per round, like etcd's revocation rate limit).
async fn expire_leases(shared: Arc<Shared>) {
    const ROUND: Duration = Duration::from_millis(500);
    const PER_ROUND: usize = 500;
    loop {
        tokio::time::sleep(ROUND).await;
        for id in shared.lessor.take_expired(PER_ROUND, shared.cfg.request_timeout()) {
            let shared = shared.clone();
            tokio::spawn(async move {
                let req = logbook_api::etcdserverpb::LeaseRevokeRequest { id };
                match shared.propose_system(Internal::LeaseRevoke(req)).await {
                    Ok(_) => tracing::debug!(lease = format!("{id:x}"), "expired lease revoked"),
                    Err(Error::LeaseNotFound) => {}
                    Err(e) => {
                        tracing::warn!(lease = format!("{id:x}"), error = %e, "revoking an expired lease failed; will retry")
                    }
                }
            });
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
