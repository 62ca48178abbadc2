//! Logbook's replicated server: a Raft member (the `raft` crate's `RawNode`)
//! persisting its log through the WAL, applying committed entries to the MVCC
//! engine, talking to peers over gRPC, and serving etcd's v3 client API.
//!
//! # Layout
//! - [`config`]: `logbook serve`'s configuration: every etcd flag, `ETCD_*`
//!   variables and `--config-file` YAML.
//! - [`version`]: the etcd version Logbook reports.
//! - [`ids`]: member and cluster IDs derived as etcd derives them.
//! - [`server`]: start-up, bootstrap, listeners, shutdown.
//! - [`node`]: the Raft thread: ready loop, proposals, read index, apply.
//! - [`raft_storage`]: the `raft::Storage` over the in-memory log tail, with
//!   snapshots taken from the engine.
//! - [`raft_log`]: raft's slog output forwarded to tracing.
//! - [`transport`] and [`peer_service`]: the peer gRPC streams, both ends.
//! - [`apply`]: one committed request applied to the engine.
//! - [`range`], [`txn`], [`kv_view`]: etcd's Range and Txn semantics.
//! - [`kv_service`], [`cluster_service`], [`maintenance_service`]: the etcd
//!   gRPC services.
//! - [`watch_hub`] and [`watch_service`]: watchers, their dispatcher and
//!   catch-up, and the Watch gRPC service.
//! - [`http`]: the HTTP side of the client port (health, version,
//!   metrics, the v3 JSON gateway) and the listener both protocols share.
//! - [`metrics`]: Prometheus metrics under etcd's names.
//! - [`lessor`] and [`lease_service`]: leases and the Lease gRPC service.
//! - [`auth`] and [`auth_service`]: users, roles, tokens and permission
//!   checks, and the Auth gRPC service.
//! - [`alarms`]: NOSPACE/CORRUPT alarms and the backend quota.
//! - [`membership`]: the members stored in the engine.
//! - [`engine_cell`]: the replaceable engine handle.
//! - [`error`]: the server's errors and their gRPC statuses.
//! - [`tls`]: TLS for the client and peer ports (etcd's cert flags),
//!   reloaded when the files change.
//! - [`etcd_snapshot`]: snapshots in etcd's format: the Maintenance.Snapshot
//!   stream, `logbook snapshot restore|status`.
//!
//! # Example
//! ```no_run
//! use clap::Parser;
//! use logbook_server::config::ServeArgs;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     serve: ServeArgs,
//! }
//!
//! // Serves on 127.0.0.1:2379 from ./default.logbook until SIGINT/SIGTERM.
//! logbook_server::server::run(Cli::parse_from(["logbook"]).serve).unwrap();
//! ```

pub mod alarms;
pub mod apply;
pub mod auth;
pub mod auth_service;
pub mod cluster_service;
pub mod config;
pub mod engine_cell;
pub mod error;
pub mod etcd_snapshot;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod kv_service;
pub mod kv_view;
pub mod lane;
pub mod lease_service;
pub mod lessor;
pub mod maintenance_service;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod peer_service;
pub mod raft_log;
pub mod raft_storage;
pub mod range;
pub mod server;
pub mod tls;
pub mod transport;
pub mod txn;
pub mod version;
pub mod watch_hub;
pub mod watch_service;

pub use error::{Error, Result};
