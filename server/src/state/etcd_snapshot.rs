//! Snapshots in etcd's format at the server's edge: the `Maintenance.Snapshot` stream,
//! `logbook snapshot restore` (a data dir from an etcd or Logbook snapshot) and
//! `logbook snapshot status`. The format itself lives in `logbook-etcdsnap`; this file maps
//! the server's own buckets to and from etcd's.
//!
//! | etcd bucket | Logbook |
//! |---|---|
//! | `key`, `meta` | the engine's revisions, compaction and applied index |
//! | `members` | the `members` bucket (`StoredMember`) as etcd's JSON; a restore writes the new members instead |
//! | `members_removed` | the `members_removed` bucket (ID -> `removed`), keyed by the ID in hex as etcd keys it; a restore drops it (a new cluster, as etcdctl's restore does) |
//! | `cluster` | `clusterVersion` |
//! | `alarm` (key: an encoded `AlarmMember`, empty value) | the `alarm` bucket (member ID and alarm type -> `AlarmMember`); a restore keeps raised alarms, as etcdctl's does |
//! | `lease`, `auth`, `authUsers`, `authRoles` | as `logbook_etcdsnap::export::PASS_THROUGH` maps them, verbatim: leases into the lessor's `lease` bucket, auth into the auth store's buckets of the same names (etcd's layout) |

use std::path::{Path, PathBuf};
use std::pin::Pin;

use clap::{Args, Parser, Subcommand};
use futures::Stream;
use logbook_api::etcdserverpb::{AlarmMember, SnapshotResponse};
use logbook_api::logbookpb::{RaftApplyState, StoredMember};
use logbook_engine::Engine;
use logbook_engine::history::{BulkLoad, History};
use logbook_etcdsnap::export::{Export, SideBuckets, pass_through_bucket};
use logbook_etcdsnap::import::{self, SideBucketImport};
use logbook_etcdsnap::layout::{self, EtcdMember};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::ConfState;
use tonic::Status;

use crate::config::ServeArgs;
use crate::schema::{
    ALARM_BUCKET, APPLY_STATE_KEY, CLUSTER_BUCKET, CLUSTER_ID_KEY, MEMBER_ID_KEY, MEMBERS_BUCKET,
    RAFT_BUCKET, REMOVED_BUCKET, alarm_key, member_key,
};

/// Bytes per `SnapshotResponse` (etcd's snapshotSendBufferSize).
const CHUNK: usize = 32 * 1024;

/// `logbook snapshot ...`: etcdctl's snapshot commands.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Build a new member's data directory from a snapshot (etcd's or Logbook's).
    Restore(RestoreArgs),
    /// Print a snapshot file's hash, revision, total keys and size.
    Status(StatusArgs),
}

/// etcdctl's `snapshot restore` flags.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Path to the data directory to create (default: <name>.etcd).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for restore bootstrap.
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the cluster during restore bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Ignore the snapshot's integrity hash (needed for a db file copied from a data dir).
    #[arg(long)]
    pub skip_hash_check: bool,
}

/// etcdctl's `snapshot status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Output format: simple, json or table.
    #[arg(short = 'w', long, default_value = "simple")]
    pub write_out: String,
}

/// Runs a `logbook snapshot` subcommand, printing what etcdctl prints.
pub fn run(args: SnapshotArgs) -> Result<(), String> {
    match args.command {
        SnapshotCommand::Status(a) => {
            let db = logbook_etcdsnap::file::open(&a.file, true).map_err(|e| e.to_string())?;
            let st = logbook_etcdsnap::file::status(&db).map_err(|e| e.to_string())?;
            match a.write_out.as_str() {
                "simple" => println!("{}", st.simple()),
                "json" => println!("{}", st.json()),
                "table" => print!("{}", st.table()),
                other => return Err(format!("unsupported output format {other:?}")),
            }
            Ok(())
        }
        SnapshotCommand::Restore(a) => {
            let out = restore(&a).map_err(|e| e.to_string())?;
            eprintln!(
                "restored snapshot {} into {} at revision {} (compacted at {}, {} revisions)",
                a.file.display(),
                out.0.display(),
                out.1.revision,
                out.1.compact_revision,
                out.1.records
            );
            Ok(())
        }
    }
}

#[derive(Parser)]
struct ServeCli {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Restores a snapshot into a new data directory (built beside it, renamed into place at
/// the end: a failed restore leaves nothing behind). Returns the directory and what loaded.
pub fn restore(a: &RestoreArgs) -> crate::Result<(PathBuf, import::Imported)> {
    use crate::Error;
    let data_dir = a.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", a.name)));
    // The member and cluster identities exactly as `logbook serve` derives them.
    let serve_flags = [
        "logbook".to_string(),
        format!("--name={}", a.name),
        format!("--data-dir={}", data_dir.display()),
        format!("--initial-cluster={}", a.initial_cluster),
        format!("--initial-cluster-token={}", a.initial_cluster_token),
        format!("--initial-advertise-peer-urls={}", a.initial_advertise_peer_urls),
    ];
    let cli = ServeCli::try_parse_from(serve_flags).map_err(|e| Error::Config(e.to_string()))?;
    let cfg = cli.serve.into_config()?;
    if data_dir.exists() {
        return Err(Error::Config(format!("data-dir {:?} exists", data_dir.display())));
    }
    let db = logbook_etcdsnap::file::open(&a.file, a.skip_hash_check)
        .map_err(|e| Error::Config(format!("snapshot {}: {e}", a.file.display())))?;

    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> crate::Result<import::Imported> {
        let rel_db = cfg.db_path.strip_prefix(&cfg.data_dir).unwrap_or(Path::new("member/snap/db"));
        let db_path = tmp.join(rel_db);
        std::fs::create_dir_all(db_path.parent().expect("db path has a parent"))
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        std::fs::create_dir_all(tmp.join("member").join("wal"))
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let engine = Engine::open(&db_path, logbook_engine::Options::default())?;
        let mut side = RestoreBuckets { cfg: &cfg };
        let out = import::import(&db, &engine, &mut side, 0)
            .map_err(|e| Error::Config(format!("snapshot {}: {e}", a.file.display())))?;
        drop(engine);
        Ok(out)
    })();
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &data_dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        Error::io(format!("moving the restored data dir into {}", data_dir.display()), e)
    })?;
    Ok((data_dir, out))
}

/// A restore's side buckets: the new cluster's members and Raft configuration (like
/// `etcdctl snapshot restore`, which rewrites membership), leases, the rest verbatim.
struct RestoreBuckets<'a> {
    cfg: &'a crate::config::Config,
}

impl RestoreBuckets<'_> {
    /// What `server::bootstrap` writes for a new member, here as part of the load.
    fn write_membership(&mut self, load: &mut BulkLoad<'_>) -> logbook_etcdsnap::Result<()> {
        let cfg = self.cfg;
        for m in &cfg.initial_cluster {
            let stored = StoredMember {
                id: m.id,
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            };
            load.meta_put(MEMBERS_BUCKET, &member_key(m.id), &stored.encode_to_vec())?;
        }
        let voters: Vec<u64> = cfg.initial_cluster.iter().map(|m| m.id).collect();
        let conf_state = ConfState::from((voters, Vec::new()));
        let state = RaftApplyState {
            term: 0,
            conf_state: conf_state.write_to_bytes().expect("conf states encode").into(),
        };
        load.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &state.encode_to_vec())?;
        load.meta_put(CLUSTER_BUCKET, CLUSTER_ID_KEY, &cfg.cluster_id.to_be_bytes())?;
        load.meta_put(CLUSTER_BUCKET, MEMBER_ID_KEY, &cfg.member_id.to_be_bytes())?;
        Ok(())
    }
}

impl SideBucketImport for RestoreBuckets<'_> {
    fn import(
        &mut self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        load: &mut BulkLoad<'_>,
    ) -> logbook_etcdsnap::Result<()> {
        match bucket {
            layout::MEMBERS | layout::MEMBERS_REMOVED | layout::CLUSTER => Ok(()),
            layout::ALARM => {
                let a = AlarmMember::decode(key).map_err(|e| {
                    logbook_etcdsnap::Error::NotEtcd(format!("undecodable alarm {key:02x?}: {e}"))
                })?;
                let record = a.encode_to_vec();
                Ok(load.meta_put(ALARM_BUCKET, &alarm_key(a.member_id, a.alarm), &record)?)
            }
            other => match pass_through_bucket(other) {
                Some(b) => Ok(load.meta_put(b, key, value)?),
                None => Ok(()),
            },
        }
    }

    fn before_finish(&mut self, load: &mut BulkLoad<'_>) -> logbook_etcdsnap::Result<()> {
        self.write_membership(load)
    }
}

/// The server's buckets as etcd lays them out, for `Maintenance.Snapshot`.
pub struct ServerBuckets;

impl SideBuckets for ServerBuckets {
    fn etcd_bucket(&self, h: &History, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        match name {
            layout::MEMBERS => h
                .meta_scan(MEMBERS_BUCKET)
                .into_iter()
                .filter_map(|(_, v)| StoredMember::decode(v.as_slice()).ok())
                .map(|m| {
                    let e = EtcdMember {
                        id: m.id,
                        name: m.name,
                        peer_urls: m.peer_urls,
                        client_urls: m.client_urls,
                        is_learner: m.is_learner,
                    };
                    (e.key(), e.to_json())
                })
                .collect(),
            // etcd keys an alarm by the encoded `AlarmMember` and stores nothing.
            layout::ALARM => {
                h.meta_scan(ALARM_BUCKET).into_iter().map(|(_, v)| (v, Vec::new())).collect()
            }
            layout::MEMBERS_REMOVED => h
                .meta_scan(REMOVED_BUCKET)
                .into_iter()
                .map(|(k, v)| {
                    let id = u64::from_be_bytes(k.as_slice().try_into().unwrap_or_else(|_| {
                        panic!("members_removed record with a {}-byte key", k.len())
                    }));
                    (format!("{id:x}").into_bytes(), v)
                })
                .collect(),
            layout::CLUSTER => {
                // The cluster version a downgrade set, else the members' own.
                let version = h
                    .meta_scan(CLUSTER_BUCKET)
                    .into_iter()
                    .find(|(k, _)| k.as_slice() == crate::schema::CLUSTER_VERSION_KEY)
                    .map_or_else(|| crate::version::cluster_version().into_bytes(), |(_, v)| v);
                vec![(layout::CLUSTER_VERSION.to_vec(), version)]
            }
            other => pass_through_bucket(other).map(|b| h.meta_scan(b)).unwrap_or_default(),
        }
    }
}

/// The `Maintenance.Snapshot` response stream.
pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// Streams a snapshot of `engine` in etcd's format: the database in 32 KiB chunks counting
/// `remaining_bytes` down to 0, then one message with its SHA-256 (as etcd sends it).
pub async fn snapshot_stream(engine: std::sync::Arc<Engine>) -> Result<SnapshotStream, Status> {
    let export = tokio::task::spawn_blocking(move || -> Result<Export, Status> {
        let h = engine.history().map_err(|e| Status::internal(e.to_string()))?;
        Export::new(h, &ServerBuckets).map_err(|e| Status::internal(e.to_string()))
    })
    .await
    .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))??;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SnapshotResponse, Status>>(4);
    tokio::task::spawn_blocking(move || {
        let total = export.db_size();
        let mut w = ChunkWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK), sent: 0, total };
        let r = export.write_db(&mut w).and_then(|sum| {
            w.send_chunk()?;
            Ok(sum)
        });
        let last = match r {
            Ok(sum) => Ok(SnapshotResponse {
                remaining_bytes: 0,
                blob: sum.to_vec().into(),
                ..Default::default()
            }),
            Err(e) => Err(Status::internal(format!("writing the snapshot: {e}"))),
        };
        let _ = tx.blocking_send(last);
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
    buf: Vec<u8>,
    sent: u64,
    total: u64,
}

impl ChunkWriter {
    fn send_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.sent += self.buf.len() as u64;
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let msg = SnapshotResponse {
            remaining_bytes: self.total.saturating_sub(self.sent),
            blob: blob.into(),
            ..Default::default()
        };
        self.tx
            .blocking_send(Ok(msg))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::REMOVED_VALUE;

    #[test]
    fn removed_members_export_as_etcd_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine =
            Engine::open(dir.path().join("db"), logbook_engine::Options::default()).unwrap();
        let mut t = engine.write(1);
        t.meta_put(REMOVED_BUCKET, &member_key(0x8e9e05c52164694d), REMOVED_VALUE);
        t.meta_put(REMOVED_BUCKET, &member_key(0x2a), REMOVED_VALUE);
        t.commit();
        let h = engine.history().unwrap();
        assert_eq!(
            ServerBuckets.etcd_bucket(&h, layout::MEMBERS_REMOVED),
            vec![
                (b"2a".to_vec(), b"removed".to_vec()),
                (b"8e9e05c52164694d".to_vec(), b"removed".to_vec())
            ]
        );
    }
}
