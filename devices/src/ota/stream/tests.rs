use super::*;
use proptest::prelude::*;

#[test]
fn topics() {
    assert_eq!(
        parse_topic("$aws/things/t1/streams/fw-00/get/json"),
        Some(("t1", "fw-00"))
    );
    for t in [
        "$aws/things/t1/streams/fw-00/get/cbor",
        "$aws/things/t1/streams//get/json",
        "$aws/things/t1/streams/a/b/get/json",
        "$aws/things/t1/jobs/get",
    ] {
        assert_eq!(parse_topic(t), None, "{t}");
    }
    assert!(is_server_topic("$aws/things/t1/streams/fw/data/json"));
    assert!(is_server_topic("$aws/things/t1/streams/fw/rejected/json"));
    assert!(!is_server_topic("$aws/things/t1/streams/fw/get/json"));
}

#[test]
fn requests_name_blocks_by_offset_count_and_bitmap() {
    let g = parse_get(br#"{"c":"x","f":0,"l":256,"o":2,"n":3}"#, 1000).unwrap();
    assert_eq!(
        (g.blocks.clone(), g.client_token.as_deref()),
        (vec![2, 3], Some("x"))
    );
    assert_eq!(g.span(3, 1000), (768, 232), "the last block is short");
    // Bitmap: blocks 0 and 2 of 0..4 (0b0101).
    let b = base64_encode(&[0b0000_0101]);
    let g = parse_get(
        format!(r#"{{"l":256,"o":0,"n":4,"b":"{b}"}}"#).as_bytes(),
        4096,
    )
    .unwrap();
    assert_eq!(g.blocks, vec![0, 2]);
    // At most 1 MiB per request.
    let g = parse_get(br#"{"l":131072,"o":0,"n":100}"#, 100 << 20).unwrap();
    assert_eq!(g.blocks.len(), 8);
    for (bad, code) in [
        (&br#"nope"#[..], "InvalidRequest"),
        (br#"{"l":100}"#, "InvalidRequest"),
        (br#"{"o":0}"#, "InvalidRequest"),
        (br#"{"l":256,"o":4}"#, "InvalidRequest"),
        (br#"{"l":256,"f":1}"#, "ResourceNotFound"),
        (br#"{"l":256,"b":"!!"}"#, "InvalidRequest"),
    ] {
        assert_eq!(parse_get(bad, 1000).unwrap_err().0.code, code, "{bad:?}");
    }
    let e = Refusal::new("InvalidRequest", "m").document(Some("t"));
    assert_eq!(e, json!({"o": "InvalidRequest", "m": "m", "c": "t"}));
}

#[test]
fn data_messages_carry_index_offset_and_base64() {
    let g = parse_get(br#"{"l":256,"o":1,"c":"k"}"#, 600).unwrap();
    let v = g.data(1, 256, b"hello");
    assert_eq!(
        v,
        json!({"f": 0, "i": 1, "l": 5, "o": 256, "p": "aGVsbG8=", "c": "k"})
    );
}

proptest! {
    #[test]
    fn base64_round_trips(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(base64_decode(&base64_encode(&b)), Some(b));
    }

    /// The blocks asked for are in the file, in order, each once, and within the cap.
    #[test]
    fn blocks_stay_in_the_file(size in 1u64..5_000_000, l in 256u64..140_000, o in 0u64..100,
                               n in 0u64..200, bitmap in proptest::collection::vec(any::<u8>(), 0..30)) {
        let b = base64_encode(&bitmap);
        let req = format!(r#"{{"l":{l},"o":{o},"n":{n},"b":"{b}"}}"#);
        if let Ok(g) = parse_get(req.as_bytes(), size) {
            let total = size.div_ceil(g.block_size);
            prop_assert!(g.blocks.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(g.blocks.iter().all(|&i| i >= o && i < total));
            prop_assert!(g.blocks.len() as u64 * g.block_size <= MAX_REQUEST_BYTES.max(g.block_size));
        }
    }
}
