//! The wire API of Logbook: etcd's v3 client API and Logbook's peer API, as
//! Rust types and tonic clients and servers generated from the `.proto` files
//! in `api/proto/`.
//!
//! The etcd packages keep etcd v3.5's package, service, message and field
//! names and numbers exactly, so any etcd client (etcdctl, clientv3, jetcd,
//! etcd-client) talks to a Logbook server unchanged. Every `bytes` field is a
//! [`bytes::Bytes`], so decoding a request slices the received buffer instead
//! of copying keys and values.
//!
//! # Layout
//! - [`mvccpb`]: `KeyValue` and `Event`, the records reads and watches return.
//! - [`authpb`]: users, roles and permissions.
//! - [`etcdserverpb`]: the KV, Watch, Lease, Cluster, Maintenance and Auth
//!   services and their messages, with `*_client` and `*_server` modules.
//! - [`logbookpb`]: the member-to-member `Peer` service (Raft message streams,
//!   snapshot transfer, write forwarding).
//!
//! # Example
//! ```
//! use logbook_api::etcdserverpb::PutRequest;
//! use prost::Message;
//!
//! let put = PutRequest { key: "foo".into(), value: "bar".into(), ..Default::default() };
//! // Field 1 (key) and field 2 (value), both length-delimited.
//! assert_eq!(put.encode_to_vec(), b"\x0a\x03foo\x12\x03bar");
//! ```

#![allow(clippy::doc_markdown, clippy::large_enum_variant)]

/// etcd's `mvccpb` package: the versioned key-value record and watch events.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `authpb` package: users, roles and key permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's `etcdserverpb` package: the v3 client API.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Logbook's member-to-member API.
pub mod logbookpb {
    tonic::include_proto!("logbookpb");
}

pub use prost;
pub use tonic;
