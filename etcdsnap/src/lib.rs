//! etcd's snapshot format, both ways: the bbolt database etcd keeps its backend in, laid
//! out as etcd lays it out, with the SHA-256 trailer `etcdctl snapshot save` appends; read
//! into Logbook's engine with every revision intact, and written from it as a stream.
//!
//! It is its own crate because it is a format at the edge, like `wal` and `engine` knowing
//! nothing of Raft or gRPC: the server streams [`export::Export`] for `Maintenance.Snapshot`
//! and `logbook snapshot restore|status` drive [`import`] and [`file`]. Tests of the format
//! run without building the server.
//!
//! # Layout
//! - [`bbolt`]: bbolt's file format: [`bbolt::Db`] (reader), [`bbolt::DbWriter`] (writer).
//! - [`layout`]: etcd's buckets, revision keys and values inside it.
//! - [`export`]: engine history -> snapshot stream; [`import`]: snapshot -> engine.
//! - [`file`]: snapshot files: the hash trailer, `snapshot status`.
//! - [`error`]: the crate's `Error`.
//!
//! # Example
//!
//! ```
//! use logbook_engine::{Engine, Options, RangeOptions};
//! use logbook_etcdsnap::{bbolt::Db, export, import};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let src = Engine::open(dir.path().join("a"), Options::default()).unwrap();
//! let mut t = src.write(1);
//! t.put(b"foo", b"bar", 0).unwrap();
//! t.commit();
//!
//! let snap = export::Export::new(src.history().unwrap(), &export::PassThroughOnly).unwrap();
//! let mut bytes = Vec::new();
//! snap.write_db(&mut bytes).unwrap();
//!
//! let dst = Engine::open(dir.path().join("b"), Options::default()).unwrap();
//! let db = Db::open(bytes, None).unwrap();
//! import::import(&db, &dst, &mut import::PassThroughImport, 1).unwrap();
//! let r = dst.range(&RangeOptions::key("foo")).unwrap();
//! assert_eq!((r.kvs[0].value.as_slice(), r.kvs[0].mod_revision), (&b"bar"[..], 2));
//! ```

pub mod bbolt;
pub mod error;
pub mod export;
pub mod file;
pub mod import;
pub mod layout;

pub use error::{Error, Result};
