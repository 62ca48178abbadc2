//! The replicated state machine and its stores: everything every member
//! holds alike, changed only by applying committed entries in log order.
//!
//! - [`machine`]: entries applied: requests, membership changes, snapshot
//!   installs.
//! - [`apply`]: one client request applied to the engine.
//! - [`stores`]: the engine, leases, alarms and auth together, rebuilt from
//!   the engine; the Raft position of the engine's data.
//! - [`range`], [`txn`], [`kv_view`]: etcd's Range and Txn semantics over a
//!   view of the engine.
//! - [`lessor`], [`alarms`], [`membership`], [`auth`]: leases, alarms,
//!   members, users and roles.
//! - [`auth_token`], [`jwt`]: the tokens `--auth-token` asks for: etcd's
//!   simple tokens, or signed JWTs.
//! - [`engine_cell`]: the replaceable engine handle.
//! - [`hash_storage`]: HashKV as etcd answers it, and the hashes recorded
//!   at compactions for the corruption checks.
//! - [`etcd_snapshot`]: the engine to and from etcd's snapshot format.
//!
//! Imports only the leaves (`schema`, `error`, `config`, `tls`, ...), never
//! `raft`, `peer`, `watch`, `services` or `http`.

pub mod alarms;
pub mod apply;
pub mod auth;
pub mod auth_token;
pub mod engine_cell;
pub mod etcd_snapshot;
pub mod hash_storage;
pub mod jwt;
pub mod kv_view;
pub mod lessor;
pub mod machine;
pub mod membership;
pub mod range;
pub mod stores;
pub mod txn;
