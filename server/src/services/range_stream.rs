//! `KV.RangeStream` (etcd 3.7): a Range answered in chunks, all read at the
//! revision the stream started at, so a list of any size never has to be
//! built whole in memory (kube-apiserver lists large resources this way).
//!
//! As etcd does it: count-only requests get one answer; otherwise chunks
//! start at 10 keys and double or halve so each lands near
//! `--max-request-bytes`; only the last chunk carries the header (with the
//! pinned revision), `more` and `count`. Custom sort orders and revision
//! filters are refused as etcd refuses them. The chunks are produced by a
//! task feeding a channel of one slot, so at most about two chunks are in
//! memory per stream, however slowly the client reads.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use logbook_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use logbook_api::etcdserverpb::{RangeRequest, RangeResponse, RangeStreamResponse};
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::Status;

use crate::error::{Error, Result};
use crate::services::context::Context;
use crate::state::auth::{Access, AuthInfo};
use crate::state::range::execute_range;
use crate::state::txn::{Revisions, check_range, check_range_revision};

/// The first chunk's key limit (etcd's `initialStreamChunkLimit`).
const FIRST_CHUNK_KEYS: i64 = 10;

/// The stream of chunks a RangeStream answers with.
pub type RangeStreamStream =
    Pin<Box<dyn Stream<Item = std::result::Result<RangeStreamResponse, Status>> + Send>>;

/// etcd's checks on a RangeStream request, beyond Range's.
fn check_range_stream(r: &RangeRequest) -> Result<()> {
    check_range(r)?;
    let order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let default_order =
        order == SortOrder::None || (target == SortTarget::Key && order == SortOrder::Ascend);
    if !default_order {
        return Err(Error::Unimplemented("RangeStream does not support custom sort orders"));
    }
    if r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
    {
        return Err(Error::Unimplemented("RangeStream does not support revision filters"));
    }
    Ok(())
}

/// The next chunk's key limit: doubled when the last chunk came out under
/// half the target size, halved when over twice it, never below one.
fn next_chunk_limit(last: i64, last_bytes: usize, target_bytes: usize) -> i64 {
    let next = if last_bytes < target_bytes / 2 {
        last.saturating_mul(2)
    } else if last_bytes > target_bytes.saturating_mul(2) {
        last / 2
    } else {
        last
    };
    next.max(1)
}

/// Starts answering `r` on behalf of `who`; errors found before the first
/// chunk (bad request, no permission, compacted or future revision) are
/// the call's error, later ones end the stream.
pub async fn range_stream(
    ctx: Arc<Context>,
    mut r: RangeRequest,
    who: Option<AuthInfo>,
) -> Result<RangeStreamStream> {
    check_range_stream(&r)?;
    if !r.serializable {
        ctx.raft.read_index().await?;
    }
    ctx.stores.auth.check(who.as_ref(), &r.key, &r.range_end, Access::Read)?;
    let engine = ctx.engine();
    let current = engine.current_revision();
    let revs = Revisions { current, compacted: engine.compact_revision() };
    check_range_revision(r.revision, revs)?;
    // Every chunk reads at one revision: the one asked for, or the store's
    // revision now. The header reports the store's revision at the start.
    if r.revision <= 0 {
        r.revision = current;
    }
    let header_revision = current;

    if r.count_only {
        let resp = execute_range(engine.as_ref(), &r)?;
        let out = RangeResponse {
            header: Some(ctx.header(header_revision)),
            count: resp.count,
            ..Default::default()
        };
        let one = futures::stream::iter([Ok(RangeStreamResponse { range_response: Some(out) })]);
        return Ok(Box::pin(one));
    }

    let total_limit = if r.limit > 0 { r.limit } else { i64::MAX };
    let target_bytes = ctx.cfg.max_request_bytes;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut chunk = r;
        chunk.limit = FIRST_CHUNK_KEYS.min(total_limit);
        let mut sent = 0i64;
        loop {
            // The engine may have been replaced (a snapshot install); read the
            // current one each time, at the pinned revision.
            let engine = ctx.engine();
            let resp = match execute_range(engine.as_ref(), &chunk) {
                Ok(resp) => resp,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    return;
                }
            };
            drop(engine);
            let bytes = resp.encoded_len();
            let in_chunk = resp.kvs.len() as i64;
            let next_key = resp.kvs.last().filter(|_| resp.more).map(|kv| {
                let mut k = kv.key.to_vec();
                k.push(0);
                k
            });
            let done = !resp.more || sent + in_chunk >= total_limit;
            let mut out = RangeResponse { kvs: resp.kvs, ..Default::default() };
            if done {
                out.header = Some(ctx.header(header_revision));
                out.more = resp.more;
                // This chunk's count covers every key from its start key on.
                out.count = sent + resp.count;
            }
            sent += in_chunk;
            let msg = RangeStreamResponse { range_response: Some(out) };
            if tx.send(Ok(msg)).await.is_err() || done {
                return;
            }
            chunk.key = next_key.expect("a chunk with more has keys").into();
            chunk.limit =
                next_chunk_limit(chunk.limit, bytes, target_bytes).min(total_limit - sent);
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_and_shrink_toward_the_target() {
        assert_eq!(next_chunk_limit(10, 100, 1000), 20);
        assert_eq!(next_chunk_limit(10, 600, 1000), 10);
        assert_eq!(next_chunk_limit(10, 2001, 1000), 5);
        assert_eq!(next_chunk_limit(1, 5000, 1000), 1);
    }

    #[test]
    fn sort_orders_and_filters_are_refused_as_etcd_does() {
        let ok = RangeRequest { key: b"a".to_vec().into(), ..Default::default() };
        assert!(check_range_stream(&ok).is_ok());
        let asc = RangeRequest { sort_order: SortOrder::Ascend as i32, ..ok.clone() };
        assert!(check_range_stream(&asc).is_ok());
        let desc = RangeRequest { sort_order: SortOrder::Descend as i32, ..ok.clone() };
        let e = Status::from(check_range_stream(&desc).unwrap_err());
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert_eq!(e.message(), "RangeStream does not support custom sort orders");
        let filtered = RangeRequest { min_mod_revision: 3, ..ok.clone() };
        let e = Status::from(check_range_stream(&filtered).unwrap_err());
        assert_eq!(e.message(), "RangeStream does not support revision filters");
        let empty = RangeRequest::default();
        assert!(check_range_stream(&empty).is_err());
    }
}
