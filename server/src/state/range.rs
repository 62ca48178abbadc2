//! Range, with etcd's semantics on top of the engine: sort order and target,
//! the revision filters, limit and `more`, count and keys only.

use bytes::Bytes;
use logbook_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use logbook_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use logbook_api::mvccpb;
use logbook_engine::{KeyValue, RangeOptions};

use crate::error::Result;
use crate::state::kv_view::KvView;

/// Converts an engine record to its wire form without copying key or value.
pub fn to_wire(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: Bytes::from(kv.key),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: Bytes::from(kv.value),
        lease: kv.lease,
    }
}

/// Runs a RangeRequest against `view`. The header carries only the store's
/// revision; the caller fills in the member's identity.
pub fn execute_range(view: &impl KvView, r: &RangeRequest) -> Result<RangeResponse> {
    let sort_order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;

    // As etcd: fetch everything when the result must be sorted or filtered
    // before the limit applies, else one more than the limit to learn `more`.
    let limit = if sort_order != SortOrder::None || filtered {
        0
    } else if r.limit > 0 {
        r.limit + 1
    } else {
        0
    };
    let opts = RangeOptions {
        key: r.key.to_vec(),
        range_end: r.range_end.to_vec(),
        revision: r.revision,
        limit,
        keys_only: r.keys_only,
        count_only: r.count_only,
        ..Default::default()
    };
    let rr = view.range(&opts)?;
    let mut kvs = rr.kvs;

    if filtered {
        kvs.retain(|kv| {
            (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
                && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
        });
    }

    // Results come sorted by key ascending; etcd re-sorts only when asked for
    // something else, and a non-key target with no order means ascending.
    let order = match (sort_target, sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (t, SortOrder::None) if t != SortTarget::Key => SortOrder::Ascend,
        (_, o) => o,
    };
    if order != SortOrder::None {
        let key_of = |kv: &KeyValue| -> (i64, Vec<u8>) {
            match sort_target {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, Vec::new()),
                SortTarget::Create => (kv.create_revision, Vec::new()),
                SortTarget::Mod => (kv.mod_revision, Vec::new()),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        // Stable, so equal targets keep key order, as etcd's sort does.
        kvs.sort_by_key(key_of);
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }

    let mut more = rr.more;
    if r.limit > 0 && kvs.len() as i64 > r.limit {
        kvs.truncate(r.limit as usize);
        more = true;
    } else if limit > 0 {
        // We asked for limit+1 and got no more than the limit.
        more = false;
    }

    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: rr.revision, ..Default::default() }),
        kvs: kvs.into_iter().map(to_wire).collect(),
        more,
        count: rr.count,
    })
}
