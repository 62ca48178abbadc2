//! The member's wiring: `logbook serve` opens (or bootstraps) a member's
//! data directory ([`bootstrap`]), builds the state machine's stores, the
//! Raft thread, the peer transport, the watch hub and the services' context,
//! serves the client and peer ports, runs the background [`tasks`] (and the
//! auto-[`compactor`] and the [`corruption`] checks), logs as etcd does
//! ([`logging`]), and on
//! SIGINT or SIGTERM shuts everything down in order.
//!
//! The top of the import order: may import every folder of the crate.

mod bootstrap;
mod compactor;
mod corruption;
mod logging;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use logbook_api::etcdserverpb::auth_server::AuthServer;
use logbook_api::etcdserverpb::cluster_server::ClusterServer;
use logbook_api::etcdserverpb::kv_server::KvServer;
use logbook_api::etcdserverpb::lease_server::LeaseServer;
use logbook_api::etcdserverpb::maintenance_server::MaintenanceServer;
use logbook_api::etcdserverpb::watch_server::WatchServer;
use logbook_api::logbookpb::peer_server::PeerServer;
use logbook_api::v3electionpb::election_server::ElectionServer;
use logbook_api::v3lockpb::lock_server::LockServer;
use raft::RawNode;
use tokio::sync::watch;

use crate::config::{Config, ServeArgs};
use crate::error::{Error, Result};
use crate::http::{ConnOptions, Traffic};
use crate::peer::lane;
use crate::peer::service::PeerService;
use crate::peer::transport::{LocalIdentity, MAX_PEER_MESSAGE, Transport};
use crate::raft::handle::RaftHandle;
use crate::raft::proposals::Proposals;
use crate::raft::raft_loop::{RaftLoop, RaftParts};
use crate::services::auth::AuthService;
use crate::services::cluster::ClusterService;
use crate::services::context::Context;
use crate::services::election::ElectionService;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::services::lock::LockService;
use crate::services::maintenance::MaintenanceService;
use crate::services::watch::WatchService;
use crate::state::auth::AuthStore;
use crate::state::auth_token::TokenProvider;
use crate::state::engine_cell::EngineCell;
use crate::state::hash_storage::HashStorage;
use crate::state::lessor::{Checkpoints, Lessor};
use crate::state::machine::StateMachine;
use crate::state::stores::Stores;
use crate::status::RaftStatus;
use crate::watch::hub::WatchHub;

/// etcd lets a gRPC message exceed --max-request-bytes by this much, for
/// the envelope around the payload.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Parses the flags, sets up logging and runs the member until a signal.
pub fn run(args: ServeArgs) -> Result<()> {
    let cfg = args.into_config()?;
    logging::init(&cfg.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("logbook-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    runtime.block_on(serve(cfg))
}

async fn serve(mut cfg: Config) -> Result<()> {
    // JWT keys are read and checked first: a bad one stops start-up.
    let tokens = TokenProvider::new(&cfg.auth_token, cfg.auth_token_ttl)?;
    if cfg.metrics_extensive {
        crate::metrics::METRICS.enable_extensive();
    }
    let opened = bootstrap::open_engine(&mut cfg).await?;
    let (engine, members, engine_options) = (opened.engine, opened.members, opened.options);
    let cfg = Arc::new(cfg);

    // The state machine's stores, and the Raft log past what they reflect.
    let apply_state = bootstrap::load_apply_state(&engine)?;
    let applied = apply_state.index;
    let stores = Arc::new(Stores::open(
        Arc::new(EngineCell::new(engine)),
        engine_options,
        apply_state,
        Lessor::with_checkpoints(
            Lessor::min_ttl_for(cfg.election_timeout()),
            Checkpoints { enabled: cfg.lease_checkpoint, persist: cfg.lease_checkpoint_persist },
        ),
        AuthStore::new(tokens, cfg.bcrypt_cost),
        HashStorage::new(cfg.compact_hash_check),
    )?);
    // A member that already held data compares it with its peers' before
    // it serves anyone (a new member has nothing to compare, as in etcd).
    if cfg.initial_corrupt_check && !opened.fresh {
        corruption::initial_check(&cfg, &stores).await?;
    }
    let (wal, storage) =
        bootstrap::recover_raft_log(&cfg, stores.engine.clone(), &stores.apply_state)?;

    let raft_config = raft::Config {
        id: cfg.member_id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: 1,
        applied,
        check_quorum: true,
        pre_vote: cfg.pre_vote,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    };
    raft_config.validate()?;
    let node =
        RawNode::new(&raft_config, storage.clone(), &crate::raft::log::logger(cfg.member_id))?;

    let (inbox_tx, inbox_rx) = crate::raft::inbox::inbox()
        .map_err(|e| Error::io("creating the raft loop's doorbell", e))?;
    let status = Arc::new(RaftStatus::new(cfg.cluster_id, cfg.member_id, applied));
    let proposals = Arc::new(Proposals::new(cfg.member_id));
    let raft = RaftHandle::new(
        inbox_tx.clone(),
        proposals.clone(),
        status.clone(),
        cfg.max_request_bytes,
        cfg.request_timeout(),
        cfg.election_timeout(),
    );
    let request_log = match &cfg.request_log {
        Some(path) => Some(crate::services::request_log::RequestLog::open(path).map_err(|e| {
            Error::io(format!("opening the request log {} (--request-log)", path.display()), e)
        })?),
        None => None,
    };
    let ctx = Context::new(cfg.clone(), raft.clone(), status.clone(), stores.clone(), request_log);
    let sink: crate::peer::Sink = Arc::new(inbox_tx.clone());
    let transport = Transport::start(
        &tokio::runtime::Handle::current(),
        LocalIdentity {
            member_id: cfg.member_id,
            cluster_id: cfg.cluster_id,
            dialer: cfg.peer_dialer.clone(),
            timeouts: lane::Timeouts { read: cfg.raft_read_timeout, write: cfg.raft_write_timeout },
        },
        members.iter().map(|m| (m.id, m.peer_urls.clone())),
        sink.clone(),
    )
    .map_err(|e| Error::io("starting the peer links", e))?;
    let hub = WatchHub::new(
        stores.engine.clone(),
        status.clone(),
        cfg.max_request_bytes,
        cfg.watch_progress_notify_interval,
    );
    let dispatcher = hub.start().map_err(|e| Error::io("starting the watch dispatcher", e))?;
    let http_state =
        crate::http::HttpState { ctx: ctx.clone(), wal: Some(wal.clone()), hub: hub.clone() };
    let parts = RaftParts {
        cfg: cfg.clone(),
        status: status.clone(),
        proposals,
        machine: StateMachine::new(stores.clone(), cfg.db_path.clone(), cfg.member_id)
            .warning_apply_duration(cfg.warning_apply_duration),
        inbox: inbox_tx,
    };
    let raft_loop = RaftLoop::new(node, storage, wal, parts, inbox_rx, transport, hub.clone());
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || raft_loop.run())
        .map_err(|e| Error::io("starting the raft thread", e))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for n in &cfg.notices {
        tracing::info!("{n}");
    }
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    for addr in &cfg.listen_peer {
        let svc = Arc::new(PeerService {
            member_id: cfg.member_id,
            cluster_id: cfg.cluster_id,
            name: cfg.name.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
            raft: sink.clone(),
            stores: stores.clone(),
            changes: Arc::new(raft.clone()),
            read_timeout: cfg.raft_read_timeout,
        });
        let router = tonic::transport::Server::builder().tcp_nodelay(true).add_service(
            PeerServer::from_arc(svc.clone())
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
        );
        let tls = cfg.tls_for(addr);
        let divert = lane::divert(svc);
        let reuse_port = cfg.socket_reuse_port;
        servers.push(
            spawn_server(*addr, "peer", router, tls, Some(divert), reuse_port, shutdown_rx.clone())
                .await?,
        );
    }
    let max_message = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    // The gateway of an HTTP-only URL calls the same gRPC services.
    let mut http_only_routes: Option<tonic::service::Routes> = None;
    // The client URLs: TCP addresses, then Unix sockets (`unix://`).
    enum ClientAddr<'a> {
        Tcp(&'a SocketAddr),
        Unix(&'a std::path::PathBuf),
    }
    let client_addrs: Vec<ClientAddr<'_>> = cfg
        .listen_client
        .iter()
        .map(ClientAddr::Tcp)
        .chain(cfg.listen_client_unix.iter().map(ClientAddr::Unix))
        .collect();
    for addr in client_addrs {
        let router = crate::http::grpc_routes()
            .add_service(
                KvServer::new(KvService { ctx: ctx.clone() })
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                WatchServer::new(WatchService::new(hub.clone(), ctx.clone()))
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                LeaseServer::new(LeaseService { ctx: ctx.clone() })
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                ClusterServer::new(ClusterService { ctx: ctx.clone() })
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                AuthServer::new(AuthService { ctx: ctx.clone() })
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                MaintenanceServer::new(MaintenanceService { ctx: ctx.clone() })
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                LockServer::new(LockService::new(ctx.clone(), hub.clone()))
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                ElectionServer::new(ElectionService::new(ctx.clone(), hub.clone()))
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            );
        // With --listen-client-http-urls the client URLs serve gRPC only.
        let split = !cfg.listen_client_http.is_empty();
        let traffic = if split { Traffic::Grpc } else { Traffic::GrpcAndHttp };
        let app = crate::http::client_router(http_state.clone(), router.clone(), traffic);
        let server = match addr {
            ClientAddr::Tcp(addr) => {
                let tls = cfg.tls_for(addr);
                let opts = ConnOptions { http2_only: split, ..ConnOptions::client(&cfg) };
                crate::http::serve(*addr, "client", app, tls, opts, shutdown_rx.clone()).await?
            }
            ClientAddr::Unix(path) => {
                crate::http::serve_unix(path.clone(), "client", app, shutdown_rx.clone()).await?
            }
        };
        servers.push(server);
        http_only_routes.get_or_insert(router);
    }
    for addr in &cfg.listen_client_http {
        let grpc = http_only_routes.clone().unwrap_or_else(crate::http::grpc_routes);
        let app = crate::http::client_router(http_state.clone(), grpc, Traffic::Http);
        let tls = cfg.tls_for(addr);
        let opts = ConnOptions { http1_only: true, ..ConnOptions::http_only(&cfg) };
        servers.push(
            crate::http::serve(*addr, "client http", app, tls, opts, shutdown_rx.clone()).await?,
        );
    }
    for addr in &cfg.listen_metrics {
        let app = crate::http::metrics_router(http_state.clone());
        let tls = cfg.tls_for(addr);
        let opts = ConnOptions::http_only(&cfg);
        servers
            .push(crate::http::serve(*addr, "metrics", app, tls, opts, shutdown_rx.clone()).await?);
    }

    let publisher = tokio::spawn(tasks::publish(ctx.clone()));
    let expirer = tokio::spawn(tasks::expire_leases(ctx.clone()));
    let checkpointer = tokio::spawn(tasks::checkpoint_leases(ctx.clone()));
    let version_monitor = tokio::spawn(tasks::monitor_cluster_version(ctx.clone()));
    let compactor = cfg.auto_compaction.map(|mode| tokio::spawn(compactor::run(ctx.clone(), mode)));
    let corrupt_check =
        cfg.corrupt_check_time.map(|every| tokio::spawn(corruption::periodic(ctx.clone(), every)));
    let compact_hash_check = cfg
        .compact_hash_check
        .then(|| tokio::spawn(corruption::compact_hash(ctx.clone(), cfg.compact_hash_check_time)));

    let mut raft_done = tokio::task::spawn_blocking(move || raft_thread.join());
    let raft_finished_first = tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("received a shutdown signal; stopping");
            None
        }
        r = &mut raft_done => {
            // Removed from the cluster, or a fatal storage error (logged).
            tracing::warn!("the raft loop has stopped; shutting the member down");
            Some(r)
        }
    };
    publisher.abort();
    expirer.abort();
    checkpointer.abort();
    version_monitor.abort();
    for task in [compactor, corrupt_check, compact_hash_check].into_iter().flatten() {
        task.abort();
    }
    let _ = shutdown_tx.send(true);
    raft.stop();
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    hub.stop();
    let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
    let raft_outcome = match raft_finished_first {
        Some(r) => r,
        None => raft_done.await,
    };
    raft_outcome
        .map_err(|e| Error::Internal(format!("joining the raft thread: {e}")))?
        .map_err(|_| Error::Internal("the raft thread panicked".into()))??;
    tracing::info!("stopped");
    Ok(())
}

async fn spawn_server(
    addr: SocketAddr,
    what: &'static str,
    router: tonic::transport::server::Router,
    tls: Option<Arc<crate::tls::ServerTls>>,
    divert: Option<crate::tls::Divert>,
    reuse_port: bool,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = crate::http::bind(addr, reuse_port)
        .map_err(|e| Error::io(format!("listening for {what} traffic on {addr}"), e))?;
    // etcd's "serving peer traffic".
    match &tls {
        None => tracing::info!(address = %addr, "serving {what} traffic"),
        Some(t) => tracing::info!(
            address = %addr,
            client_cert_auth = t.verifies_clients(),
            "serving {what} traffic securely"
        ),
    }
    let incoming = crate::tls::incoming(listener, addr, what, tls, divert);
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, address = %addr, "{what} server failed");
        }
    }))
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
