//! The generated code must put exactly etcd's bytes on the wire. Each expected
//! byte string below is written by hand from the field numbers and wire types
//! of etcd v3.5's rpc.proto / kv.proto, not produced by the code under test.

use bytes::Bytes;
use logbook_api::etcdserverpb::{
    Compare, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    StatusResponse, TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse, compare,
    request_op, watch_request,
};
use logbook_api::mvccpb::{Event, KeyValue, event::EventType};
use prost::Message;

#[test]
fn put_request_matches_etcd_encoding() {
    let put = PutRequest {
        key: Bytes::from_static(b"foo"),
        value: Bytes::from_static(b"bar"),
        lease: 0x1234,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    let expected: &[u8] = &[
        0x0a, 0x03, b'f', b'o', b'o', // 1: key
        0x12, 0x03, b'b', b'a', b'r', // 2: value
        0x18, 0xb4, 0x24, // 3: lease = 4660 as a varint
        0x20, 0x01, // 4: prev_kv
        0x30, 0x01, // 6: ignore_lease
    ];
    assert_eq!(put.encode_to_vec(), expected);
    assert_eq!(PutRequest::decode(expected).unwrap(), put);
}

#[test]
fn range_response_matches_etcd_encoding() {
    let resp = RangeResponse {
        header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 4 }),
        kvs: vec![KeyValue {
            key: Bytes::from_static(b"a"),
            create_revision: 2,
            mod_revision: 3,
            version: 1,
            value: Bytes::from_static(b"x"),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    let expected: &[u8] = &[
        0x0a, 0x08, 0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0x20, 0x04, // 1: header
        0x12, 0x0c, // 2: kvs[0], 12 bytes:
        0x0a, 0x01, b'a', // key
        0x10, 0x02, // create_revision
        0x18, 0x03, // mod_revision
        0x20, 0x01, // version
        0x2a, 0x01, b'x', // value
        0x20, 0x01, // 4: count
    ];
    assert_eq!(resp.encode_to_vec(), expected);
    assert_eq!(RangeResponse::decode(expected).unwrap(), resp);
}

#[test]
fn range_request_fields_use_etcd_numbers() {
    let req = RangeRequest {
        key: Bytes::from_static(b"k"),
        range_end: Bytes::from_static(b"\0"),
        limit: 500,
        sort_order: 2,  // DESCEND
        sort_target: 3, // MOD
        serializable: true,
        max_create_revision: 9,
        ..Default::default()
    };
    let expected: &[u8] = &[
        0x0a, 0x01, b'k', // 1: key
        0x12, 0x01, 0x00, // 2: range_end
        0x18, 0xf4, 0x03, // 3: limit = 500
        0x28, 0x02, // 5: sort_order
        0x30, 0x03, // 6: sort_target
        0x38, 0x01, // 7: serializable
        0x68, 0x09, // 13: max_create_revision
    ];
    assert_eq!(req.encode_to_vec(), expected);
}

#[test]
fn txn_compare_range_end_is_field_64() {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: 0, // EQUAL
            target: 2, // MOD
            key: Bytes::from_static(b"k"),
            range_end: Bytes::from_static(b"l"),
            target_union: Some(compare::TargetUnion::ModRevision(5)),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    let expected: &[u8] = &[
        0x0a, 0x0b, // 1: compare[0], 11 bytes:
        0x10, 0x02, // target = MOD (result EQUAL is the default, so absent)
        0x1a, 0x01, b'k', // 3: key
        0x30, 0x05, // 6: mod_revision
        0x82, 0x04, 0x01, b'l', // 64: range_end (tag 514 is a two-byte varint)
        0x12, 0x08, // 2: success[0], 8 bytes:
        0x12, 0x06, // RequestOp 2: request_put, 6 bytes:
        0x0a, 0x01, b'k', 0x12, 0x01, b'v',
    ];
    assert_eq!(txn.encode_to_vec(), expected);
    assert_eq!(TxnRequest::decode(expected).unwrap(), txn);
}

#[test]
fn watch_messages_match_etcd_encoding() {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from_static(b"/a"),
            start_revision: 7,
            prev_kv: true,
            watch_id: 3,
            ..Default::default()
        })),
    };
    let expected: &[u8] = &[
        0x0a, 0x0a, // 1: create_request, 10 bytes:
        0x0a, 0x02, b'/', b'a', // key
        0x18, 0x07, // 3: start_revision
        0x30, 0x01, // 6: prev_kv
        0x38, 0x03, // 7: watch_id
    ];
    assert_eq!(create.encode_to_vec(), expected);

    let resp = WatchResponse {
        watch_id: 3,
        events: vec![Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: Bytes::from_static(b"/a"),
                mod_revision: 8,
                ..Default::default()
            }),
            prev_kv: None,
        }],
        ..Default::default()
    };
    let expected: &[u8] = &[
        0x10, 0x03, // 2: watch_id
        0x5a, 0x08, // 11: events[0], 8 bytes:
        0x08, 0x01, // type = DELETE
        0x12, 0x04, 0x0a, 0x02, b'/', b'a', // kv: key only...
    ];
    // ...plus mod_revision: fix the lengths for the 2 extra bytes.
    let mut expected = expected.to_vec();
    expected[3] += 2;
    expected[7] += 2;
    expected.extend_from_slice(&[0x18, 0x08]);
    assert_eq!(resp.encode_to_vec(), expected);
}

#[test]
fn lease_and_status_use_etcd_names_and_numbers() {
    assert_eq!(LeaseGrantRequest { ttl: 60, id: 0 }.encode_to_vec(), [0x08, 0x3c]);
    let status = StatusResponse {
        version: "3.5.0".into(),
        db_size: 1,
        leader: 2,
        raft_index: 3,
        raft_term: 4,
        raft_applied_index: 5,
        db_size_in_use: 6,
        is_learner: true,
        ..Default::default()
    };
    let mut expected = vec![0x12, 0x05];
    expected.extend_from_slice(b"3.5.0");
    expected.extend_from_slice(&[0x18, 1, 0x20, 2, 0x28, 3, 0x30, 4, 0x38, 5, 0x48, 6, 0x50, 1]);
    assert_eq!(status.encode_to_vec(), expected);
}
