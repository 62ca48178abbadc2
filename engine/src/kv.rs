//! The values the engine hands out: key versions, watch events, range requests and results.

/// One version of one key, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change, as a watch replays it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a delete: only `key` and `mod_revision` (the delete's revision) are set.
    pub kv: KeyValue,
    /// The version this change replaced; filled only if asked for.
    pub prev_kv: Option<KeyValue>,
}

/// A range request, with etcd's conventions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    pub key: Vec<u8>,
    /// Empty: the single key `key`. `"\0"`: every key `>= key`. Otherwise `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// `<= 0`: the current revision.
    pub revision: i64,
    /// 0: no limit.
    pub limit: i64,
    pub keys_only: bool,
    pub count_only: bool,
    /// 0: no filter.
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl RangeOptions {
    /// A request for one key at the current revision.
    pub fn key(key: impl Into<Vec<u8>>) -> RangeOptions {
        RangeOptions { key: key.into(), ..Default::default() }
    }

    /// A request for `[key, range_end)` at the current revision.
    pub fn range(key: impl Into<Vec<u8>>, range_end: impl Into<Vec<u8>>) -> RangeOptions {
        RangeOptions { key: key.into(), range_end: range_end.into(), ..Default::default() }
    }

    /// A request for every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> RangeOptions {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        RangeOptions { key, range_end, ..Default::default() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Matches before the limit, after the filters.
    pub count: i64,
    /// True if the limit cut the result short.
    pub more: bool,
    /// The store's current revision.
    pub revision: i64,
}

/// The smallest key greater than every key with `prefix` (etcd's `GetPrefixRangeEnd`):
/// `"\0"` (all keys) if there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether `key` lies in etcd's range `[start, end)` (with the conventions above).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_ranges() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
        assert!(in_range(b"a", b"a", b""));
        assert!(!in_range(b"ab", b"a", b""));
        assert!(in_range(b"zzz", b"a", b"\0"));
        assert!(in_range(b"ab", b"a", b"b"));
        assert!(!in_range(b"b", b"a", b"b"));
    }
}
