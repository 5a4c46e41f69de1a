//! EIP-712 typed data as Palm reads it from wallets' JSON (alloy's
//! `TypedData`, re-exported by `palm_core::eth`), against the
//! specification's own example and an array of arrays of structs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palm_core::eth::{self, AddressText, LocalKey, TypedData, keccak256};
use serde_json::json;

/// The example of the EIP-712 specification (`Example.js`).
fn mail() -> TypedData {
    serde_json::from_value(json!({
        "types": {
            "EIP712Domain": [
                { "name": "name", "type": "string" },
                { "name": "version", "type": "string" },
                { "name": "chainId", "type": "uint256" },
                { "name": "verifyingContract", "type": "address" }
            ],
            "Person": [
                { "name": "name", "type": "string" },
                { "name": "wallet", "type": "address" }
            ],
            "Mail": [
                { "name": "from", "type": "Person" },
                { "name": "to", "type": "Person" },
                { "name": "contents", "type": "string" }
            ]
        },
        "primaryType": "Mail",
        "domain": {
            "name": "Ether Mail",
            "version": "1",
            "chainId": 1,
            "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
        },
        "message": {
            "from": { "name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826" },
            "to": { "name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB" },
            "contents": "Hello, Bob!"
        }
    }))
    .unwrap()
}

#[test]
fn the_specification_example_gives_its_published_values() {
    let data = mail();
    assert_eq!(
        data.encode_type().unwrap(),
        "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
    );
    assert_eq!(
        data.type_hash().unwrap().to_string(),
        "0xa0cedeb2dc280ba39b857546d74f5549c3a1d7bdc2dd96bf881f76108e23dac2"
    );
    assert_eq!(
        data.domain.separator().to_string(),
        "0xf2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
    );
    assert_eq!(
        data.hash_struct().unwrap().to_string(),
        "0xc52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"
    );
    assert_eq!(
        data.eip712_signing_hash().unwrap().to_string(),
        "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
}

#[test]
fn the_specification_signature_recovers_the_cow_signer() {
    // v = 28, r and s from the specification's example.
    let signature = eth::parse_signature(concat!(
        "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d",
        "07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562",
        "1c"
    ))
    .unwrap();
    let digest = mail().eip712_signing_hash().unwrap();
    assert_eq!(
        eth::recover(&signature, &digest).unwrap().to_checksummed(),
        "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
    );
    // And signing the digest with keccak256("cow") gives that signature.
    let cow = LocalKey::from_bytes(&keccak256(b"cow")).unwrap();
    assert_eq!(cow.sign_prehash(&digest).unwrap(), signature);
}

#[test]
fn a_changed_message_changes_the_digest() {
    let mut data = mail();
    data.message["contents"] = json!("Hello, Bob?");
    assert_ne!(
        data.eip712_signing_hash().unwrap().to_string(),
        "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
}

#[test]
fn the_domain_type_may_be_left_out() {
    let mut document = serde_json::to_value(mail()).unwrap();
    document["types"]
        .as_object_mut()
        .unwrap()
        .remove("EIP712Domain");
    let data: TypedData = serde_json::from_value(document).unwrap();
    assert_eq!(
        data.eip712_signing_hash().unwrap().to_string(),
        "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
}

/// Issue 14: an array of arrays of structs. The hand-written encoder dropped
/// `Person` from the type string and hashed to `0xc33c…9e82`.
#[test]
fn an_array_of_arrays_of_structs() {
    let data: TypedData = serde_json::from_value(json!({
        "types": {
            "EIP712Domain": [{ "name": "name", "type": "string" }],
            "Person": [
                { "name": "name", "type": "string" },
                { "name": "wallet", "type": "address" }
            ],
            "Board": [
                { "name": "title", "type": "string" },
                { "name": "seats", "type": "Person[][]" }
            ]
        },
        "primaryType": "Board",
        "domain": { "name": "Ether Mail" },
        "message": {
            "title": "Council",
            "seats": [
                [{ "name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826" }],
                [{ "name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB" }]
            ]
        }
    }))
    .unwrap();
    assert_eq!(
        data.encode_type().unwrap(),
        "Board(string title,Person[][] seats)Person(string name,address wallet)"
    );
    assert_eq!(
        data.eip712_signing_hash().unwrap().to_string(),
        "0xf685836afa4830e723566cc175e714f4ac6d4182686cbf227ff316a5d4320dda"
    );
}

#[test]
fn bad_values_and_unknown_types_are_refused() {
    let mut data = mail();
    data.message["to"]["wallet"] = json!("not-an-address");
    assert!(data.eip712_signing_hash().is_err());

    let mut document = serde_json::to_value(mail()).unwrap();
    document["types"]["Mail"][2]["type"] = json!("strang");
    let unknown = serde_json::from_value::<TypedData>(document)
        .ok()
        .map(|d| d.eip712_signing_hash());
    assert!(!matches!(unknown, Some(Ok(_))), "{unknown:?}");
}
