//! EIP-712 typed structured data hashing, for the JSON shape wallets sign
//! with `eth_signTypedData_v4`: `{types, primaryType, domain, message}`.
//!
//! Supported field types: structs defined in `types`, `string`, `bytes`,
//! `bool`, `address`, `bytes1`–`bytes32`, `uint8`–`uint256`, `int8`–`int256`,
//! and arrays (`T[]`, `T[n]`) of any of these. Integers may be JSON numbers,
//! decimal strings or `0x` hex strings.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::eth::{Address, keccak256};

/// One field of a struct type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedField {
    /// Field name.
    pub name: String,
    /// Solidity type name.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A typed-data document as wallets sign it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedData {
    /// Struct definitions, including `EIP712Domain` (inferred if missing).
    pub types: BTreeMap<String, Vec<TypedField>>,
    /// The struct type of `message`.
    #[serde(rename = "primaryType")]
    pub primary_type: String,
    /// Domain values.
    pub domain: Value,
    /// The message.
    pub message: Value,
}

/// Why typed data cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Eip712Error {
    /// A type name that is neither atomic, dynamic, an array nor defined.
    #[error("unknown type `{0}`")]
    UnknownType(String),
    /// A value missing or not of its declared type.
    #[error("field `{field}` is not a valid `{kind}`")]
    BadValue {
        /// Field path.
        field: String,
        /// Declared type.
        kind: String,
    },
}

const DOMAIN: &str = "EIP712Domain";
const DOMAIN_FIELDS: [(&str, &str); 5] = [
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
];

impl TypedData {
    /// The digest a wallet signs: `keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct(message))`.
    pub fn signing_hash(&self) -> Result<[u8; 32], Eip712Error> {
        let mut data = Vec::with_capacity(66);
        data.extend_from_slice(&[0x19, 0x01]);
        data.extend_from_slice(&self.domain_separator()?);
        data.extend_from_slice(&self.hash_struct(&self.primary_type, &self.message)?);
        Ok(keccak256(&data))
    }

    /// `hashStruct(EIP712Domain, domain)`.
    pub fn domain_separator(&self) -> Result<[u8; 32], Eip712Error> {
        self.hash_struct(DOMAIN, &self.domain)
    }

    fn fields(&self, kind: &str) -> Option<std::borrow::Cow<'_, [TypedField]>> {
        if let Some(fields) = self.types.get(kind) {
            return Some(std::borrow::Cow::Borrowed(fields));
        }
        // Wallets accept a domain without an explicit type: its fields are
        // then the standard ones present in the domain, in standard order.
        (kind == DOMAIN).then(|| {
            std::borrow::Cow::Owned(
                DOMAIN_FIELDS
                    .iter()
                    .filter(|(name, _)| self.domain.get(name).is_some_and(|v| !v.is_null()))
                    .map(|(name, kind)| TypedField {
                        name: (*name).to_owned(),
                        kind: (*kind).to_owned(),
                    })
                    .collect(),
            )
        })
    }

    /// `encodeType`: the primary type, then its referenced struct types sorted.
    pub fn encode_type(&self, primary: &str) -> Result<String, Eip712Error> {
        let mut found = BTreeSet::new();
        self.collect_dependencies(primary, &mut found)?;
        found.remove(primary);
        let mut out = String::new();
        for kind in std::iter::once(primary).chain(found.iter().map(String::as_str)) {
            let fields = self
                .fields(kind)
                .ok_or_else(|| Eip712Error::UnknownType(kind.to_owned()))?;
            let members: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.kind, f.name))
                .collect();
            out.push_str(&format!("{kind}({})", members.join(",")));
        }
        Ok(out)
    }

    fn collect_dependencies(
        &self,
        kind: &str,
        found: &mut BTreeSet<String>,
    ) -> Result<(), Eip712Error> {
        let base = array_base(kind).map_or(kind, |(base, _)| base);
        if found.contains(base) {
            return Ok(());
        }
        let Some(fields) = self.fields(base) else {
            return Ok(());
        };
        found.insert(base.to_owned());
        for field in fields.iter() {
            self.collect_dependencies(&field.kind, found)?;
        }
        Ok(())
    }

    /// `hashStruct(kind, value)`.
    pub fn hash_struct(&self, kind: &str, value: &Value) -> Result<[u8; 32], Eip712Error> {
        let fields = self
            .fields(kind)
            .ok_or_else(|| Eip712Error::UnknownType(kind.to_owned()))?;
        let mut data = Vec::with_capacity(32 * (fields.len() + 1));
        data.extend_from_slice(&keccak256(self.encode_type(kind)?.as_bytes()));
        for field in fields.iter() {
            let item = value.get(&field.name).unwrap_or(&Value::Null);
            data.extend_from_slice(&self.encode_value(&field.kind, item, &field.name)?);
        }
        Ok(keccak256(&data))
    }

    fn encode_value(&self, kind: &str, value: &Value, path: &str) -> Result<[u8; 32], Eip712Error> {
        let bad = || Eip712Error::BadValue {
            field: path.to_owned(),
            kind: kind.to_owned(),
        };
        if let Some((base, length)) = array_base(kind) {
            let items = value.as_array().ok_or_else(bad)?;
            if length.is_some_and(|n| n != items.len()) {
                return Err(bad());
            }
            let mut data = Vec::with_capacity(32 * items.len());
            for (i, item) in items.iter().enumerate() {
                data.extend_from_slice(&self.encode_value(base, item, &format!("{path}[{i}]"))?);
            }
            return Ok(keccak256(&data));
        }
        if self.fields(kind).is_some() && kind != "string" {
            if !value.is_object() {
                return Err(bad());
            }
            return self.hash_struct(kind, value);
        }
        let mut word = [0_u8; 32];
        match kind {
            "string" => Ok(keccak256(value.as_str().ok_or_else(bad)?.as_bytes())),
            "bytes" => Ok(keccak256(&hex_bytes(value).ok_or_else(bad)?)),
            "bool" => {
                word[31] = u8::from(value.as_bool().ok_or_else(bad)?);
                Ok(word)
            }
            "address" => {
                let address: Address =
                    value.as_str().ok_or_else(bad)?.parse().map_err(|_| bad())?;
                word[12..].copy_from_slice(address.as_bytes());
                Ok(word)
            }
            _ if kind.starts_with("bytes") => {
                let size: usize = kind[5..]
                    .parse()
                    .map_err(|_| Eip712Error::UnknownType(kind.to_owned()))?;
                let bytes = hex_bytes(value).ok_or_else(bad)?;
                if !(1..=32).contains(&size) || bytes.len() != size {
                    return Err(bad());
                }
                word[..size].copy_from_slice(&bytes);
                Ok(word)
            }
            _ if kind.starts_with("uint") || kind.starts_with("int") => {
                let signed = kind.starts_with("int");
                let bits: u32 = kind[if signed { 3 } else { 4 }..]
                    .parse()
                    .map_err(|_| Eip712Error::UnknownType(kind.to_owned()))?;
                if bits == 0 || bits > 256 || !bits.is_multiple_of(8) {
                    return Err(Eip712Error::UnknownType(kind.to_owned()));
                }
                integer_word(value, signed).ok_or_else(bad)
            }
            _ => Err(Eip712Error::UnknownType(kind.to_owned())),
        }
    }
}

/// `T[]` → (`T`, None); `T[3]` → (`T`, Some(3)).
fn array_base(kind: &str) -> Option<(&str, Option<usize>)> {
    let open = kind.strip_suffix(']')?.rfind('[')?;
    let length = &kind[open + 1..kind.len() - 1];
    Some((
        &kind[..open],
        if length.is_empty() {
            None
        } else {
            length.parse().ok()
        },
    ))
}

fn hex_bytes(value: &Value) -> Option<Vec<u8>> {
    hex::decode(value.as_str()?.strip_prefix("0x")?).ok()
}

/// A JSON integer (number, decimal string or 0x hex) as a 32-byte
/// big-endian two's-complement word.
fn integer_word(value: &Value, signed: bool) -> Option<[u8; 32]> {
    let (negative, magnitude) = match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                (false, u.to_string())
            } else {
                let i = n.as_i64()?;
                (true, i.unsigned_abs().to_string())
            }
        }
        Value::String(s) => match s.strip_prefix('-') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, s.clone()),
        },
        _ => return None,
    };
    if negative && !signed {
        return None;
    }
    let mut word = [0_u8; 32];
    if let Some(hex_digits) = magnitude.strip_prefix("0x") {
        let bytes = hex::decode(if !hex_digits.len().is_multiple_of(2) {
            format!("0{hex_digits}")
        } else {
            hex_digits.to_owned()
        })
        .ok()?;
        if bytes.len() > 32 {
            return None;
        }
        word[32 - bytes.len()..].copy_from_slice(&bytes);
    } else {
        if magnitude.is_empty() {
            return None;
        }
        for digit in magnitude.chars() {
            let mut carry = u16::from(u8::try_from(digit.to_digit(10)?).ok()?);
            for byte in word.iter_mut().rev() {
                let next = u16::from(*byte) * 10 + carry;
                *byte = (next & 0xff) as u8;
                carry = next >> 8;
            }
            if carry != 0 {
                return None;
            }
        }
    }
    if negative {
        for byte in &mut word {
            *byte = !*byte;
        }
        for byte in word.iter_mut().rev() {
            let (sum, overflow) = byte.overflowing_add(1);
            *byte = sum;
            if !overflow {
                break;
            }
        }
    }
    Some(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eth::{LocalKey, Signature};

    /// The example of the EIP-712 specification (`Example.js`).
    fn mail() -> TypedData {
        serde_json::from_value(serde_json::json!({
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
    fn reproduces_the_specification_example() {
        let data = mail();
        assert_eq!(
            data.encode_type("Mail").unwrap(),
            "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
        );
        assert_eq!(
            hex::encode(keccak256(data.encode_type("Mail").unwrap().as_bytes())),
            "a0cedeb2dc280ba39b857546d74f5549c3a1d7bdc2dd96bf881f76108e23dac2"
        );
        assert_eq!(
            hex::encode(data.domain_separator().unwrap()),
            "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
        );
        assert_eq!(
            hex::encode(data.hash_struct("Mail", &data.message).unwrap()),
            "c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"
        );
        assert_eq!(
            hex::encode(data.signing_hash().unwrap()),
            "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
    }

    #[test]
    fn the_specification_signature_recovers_the_cow_signer() {
        // v = 28, r and s from the specification's example.
        let signature: Signature = concat!(
            "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d",
            "07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562",
            "1c"
        )
        .parse()
        .unwrap();
        let signer = signature.recover(&mail().signing_hash().unwrap()).unwrap();
        assert_eq!(
            signer.to_checksummed(),
            "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
        );
        // And signing the digest with keccak256("cow") gives that signature.
        let cow = LocalKey::from_bytes(&keccak256(b"cow")).unwrap();
        assert_eq!(
            cow.sign_prehash(&mail().signing_hash().unwrap()).unwrap(),
            signature
        );
    }

    #[test]
    fn a_changed_message_changes_the_digest() {
        let mut data = mail();
        data.message["contents"] = Value::from("Hello, Bob?");
        assert_ne!(
            hex::encode(data.signing_hash().unwrap()),
            "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
    }

    #[test]
    fn the_domain_type_is_inferred_when_missing() {
        let mut data = mail();
        data.types.remove("EIP712Domain");
        assert_eq!(
            hex::encode(data.domain_separator().unwrap()),
            "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
        );
    }

    #[test]
    fn integers_in_every_notation() {
        let expect = |v: Value, signed: bool| integer_word(&v, signed).map(hex::encode);
        let one = format!("{}01", "0".repeat(62));
        assert_eq!(expect(Value::from(1), false), Some(one.clone()));
        assert_eq!(expect(Value::from("1"), false), Some(one.clone()));
        assert_eq!(expect(Value::from("0x1"), false), Some(one));
        assert_eq!(expect(Value::from(-1), true), Some("f".repeat(64)));
        assert_eq!(expect(Value::from(-1), false), None);
        assert_eq!(
            expect(Value::from("1".repeat(80)), false),
            None,
            "too large for 256 bits"
        );
        assert_eq!(
            expect(
                Value::from(
                    "115792089237316195423570985008687907853269984665640564039457584007913129639935"
                ),
                false
            ),
            Some("f".repeat(64)),
            "2^256 - 1"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut data = mail();
        data.message["to"]["wallet"] = Value::from("not-an-address");
        assert_eq!(
            data.signing_hash(),
            Err(Eip712Error::BadValue {
                field: "wallet".into(),
                kind: "address".into()
            })
        );
        let mut data = mail();
        data.types.get_mut("Mail").unwrap()[2].kind = "strang".into();
        assert!(matches!(
            data.signing_hash(),
            Err(Eip712Error::UnknownType(_))
        ));
    }
}
