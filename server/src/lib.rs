//! Logbook's replicated server: a Raft member (the `raft` crate's `RawNode`)
//! persisting its log through the WAL, applying committed entries to the MVCC
//! engine, talking to peers on its own Raft lanes, and serving etcd's v3
//! client API over gRPC and HTTP.
//!
//! # Layout
//! One folder per concern; imports run one way, down this list (checked by
//! `tests/layers.rs`):
//! - [`member`]: the wiring: bootstrap, serve, background tasks, shutdown.
//! - [`http`]: the HTTP side of the client port (health, version, metrics,
//!   the v3 JSON gateway) and the listener both protocols share.
//! - [`services`]: the etcd gRPC services, one file each, over one context.
//! - [`raft`]: the Raft thread: inbox, ready loop, proposals, reads, log storage.
//! - [`watch`]: watchers and their dispatcher.
//! - [`peer`]: the transport between members (Raft lanes, peer gRPC), handing
//!   what it receives to Raft through a trait.
//! - [`state`]: the state machine: applying entries; the engine, leases,
//!   alarms, members and auth; etcd's Range and Txn semantics.
//! - the leaves: [`config`] (every etcd flag, `ETCD_*` variables and
//!   `--config-file` YAML), [`schema`] (every bucket and key),
//!   [`status`] (leader, term, indexes; response headers), [`error`], [`ids`],
//!   [`metrics`], [`tls`], [`version`].
//!
//! # A Put, file by file
//! 1. `services/kv.rs`: `Kv::put` checks the request and the quota
//!    (`services/quota.rs`) and calls `RaftHandle::propose_as`.
//! 2. `raft/handle.rs`: encodes the request with a fresh ID, registers a
//!    waiter (`raft/proposals.rs`) and puts it in the inbox (`raft/inbox.rs`).
//! 3. `raft/raft_loop.rs`: the Raft thread drains the inbox, steps the turn's
//!    proposals into Raft as one batch, and on the ready sends the new
//!    entries to the followers (`peer/transport.rs` → `peer/lane.rs`) while it
//!    appends them to the WAL (`logbook-wal`, one fdatasync per batch).
//! 4. The followers' acknowledgements come back on their lanes
//!    (`peer/lane.rs`, read by the Raft thread); once a quorum holds the
//!    entries they are committed.
//! 5. `state/machine.rs` applies each committed entry in one engine
//!    transaction (`state/apply.rs` → `state/txn.rs`), recording the applied
//!    index with it; `raft/proposals.rs` answers the waiter with the result
//!    and the new revision, and the loop nudges the watch hub (`watch/hub.rs`).
//! 6. Back in `services/kv.rs`, the handler puts the header
//!    (`status.rs`) on the response.
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
//! logbook_server::member::run(Cli::parse_from(["logbook"]).serve).unwrap();
//! ```

pub mod config;
pub mod error;
pub mod http;
pub mod ids;
pub mod member;
pub mod metrics;
pub mod peer;
pub mod raft;
pub mod schema;
pub mod services;
pub mod state;
pub mod status;
pub mod tls;
pub mod version;
pub mod watch;

pub use error::{Error, Result};
