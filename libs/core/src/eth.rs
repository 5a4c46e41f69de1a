//! Ethereum primitives, from alloy (ADR 0021): [`Address`] (EIP-55
//! checksums), [`Signature`] (65-byte recoverable secp256k1, recovery through
//! k256), [`keccak256`], EIP-191 `personal_sign` hashing
//! ([`personal_message_hash`]) and EIP-712 [`TypedData`] read from the JSON
//! wallets sign with `eth_signTypedData_v4`.
//!
//! What stays Palm's is the policy of which text it accepts, stricter than
//! alloy's `FromStr`: [`parse_address`] wants the `0x` prefix and refuses a
//! mixed-case address whose checksum is wrong; [`parse_signature`] wants
//! exactly `0x` + 130 hex digits, `v` of 0, 1, 27 or 28 (no EIP-155 `v`) and
//! a low `s` (EIP-2: the high-`s` twin of a signature is refused, not
//! normalised). [`AddressText`] writes an address the two ways Palm does:
//! lowercase to store and compare, checksummed to show. [`LocalKey`] signs,
//! for tests and the development CLI only: services verify, they never sign.

use std::fmt;

pub use alloy_dyn_abi::TypedData;
pub use alloy_primitives::{
    Address, B256, Signature, eip191_hash_message as personal_message_hash, keccak256,
};

use k256::ecdsa::SigningKey;

/// Why an Ethereum value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    /// Not `0x` followed by 40 hex digits.
    #[error("not an Ethereum address")]
    MalformedAddress,
    /// Mixed-case address whose EIP-55 checksum does not match.
    #[error("address checksum (EIP-55) does not match")]
    BadChecksum,
    /// Not `0x` followed by 130 hex digits with v of 0, 1, 27 or 28 and a low s.
    #[error("not a 65-byte signature")]
    MalformedSignature,
    /// The signature does not recover to any public key.
    #[error("signature does not recover a signer")]
    Unrecoverable,
}

/// The two ways Palm writes an address.
pub trait AddressText {
    /// `0x`-prefixed lowercase hex: the form Palm stores and compares.
    fn to_lower_hex(&self) -> String;
    /// EIP-55 mixed-case checksummed form, as wallets display it.
    fn to_checksummed(&self) -> String;
}

impl AddressText for Address {
    fn to_lower_hex(&self) -> String {
        format!("{self:#x}")
    }

    fn to_checksummed(&self) -> String {
        self.to_checksum(None)
    }
}

/// An address as API clients and wallets write it: all-lowercase,
/// all-uppercase, or a correctly checksummed mix, always `0x`-prefixed.
pub fn parse_address(text: &str) -> Result<Address, EthError> {
    let digits = text.strip_prefix("0x").ok_or(EthError::MalformedAddress)?;
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EthError::MalformedAddress);
    }
    let mixed = digits.bytes().any(|b| b.is_ascii_lowercase())
        && digits.bytes().any(|b| b.is_ascii_uppercase());
    if mixed {
        return Address::parse_checksummed(text, None).map_err(|_| EthError::BadChecksum);
    }
    text.parse().map_err(|_| EthError::MalformedAddress)
}

/// An address that must be in EIP-55 checksummed form, as EIP-4361 requires.
pub fn parse_checksummed_address(text: &str) -> Result<Address, EthError> {
    let address = parse_address(text).map_err(|_| EthError::BadChecksum)?;
    if address.to_checksum(None) != text {
        return Err(EthError::BadChecksum);
    }
    Ok(address)
}

/// A signature as wallets return it: `0x` + r ‖ s ‖ v (v 0/1 or 27/28), low s.
pub fn parse_signature(text: &str) -> Result<Signature, EthError> {
    let digits = text
        .strip_prefix("0x")
        .ok_or(EthError::MalformedSignature)?;
    let mut bytes = [0_u8; 65];
    alloy_primitives::hex::decode_to_slice(digits, &mut bytes)
        .map_err(|_| EthError::MalformedSignature)?;
    if !matches!(bytes[64], 0 | 1 | 27 | 28) {
        return Err(EthError::MalformedSignature);
    }
    let signature = Signature::from_raw_array(&bytes).map_err(|_| EthError::MalformedSignature)?;
    if signature.normalize_s().is_some() {
        return Err(EthError::MalformedSignature);
    }
    Ok(signature)
}

/// The signer of `prehash` (a 32-byte digest).
pub fn recover(signature: &Signature, prehash: &B256) -> Result<Address, EthError> {
    if signature.normalize_s().is_some() {
        return Err(EthError::MalformedSignature);
    }
    signature
        .recover_address_from_prehash(prehash)
        .map_err(|_| EthError::Unrecoverable)
}

/// A local secp256k1 key, for tests and the development CLI only.
#[derive(Clone)]
pub struct LocalKey(SigningKey);

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalKey({})", self.address())
    }
}

impl LocalKey {
    /// From a 32-byte private key.
    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, EthError> {
        SigningKey::from_slice(secret)
            .map(Self)
            .map_err(|_| EthError::MalformedSignature)
    }

    /// A development key: the keccak-256 of `seed`.
    pub fn from_seed(seed: &[u8]) -> Result<Self, EthError> {
        Self::from_bytes(&keccak256(seed).0)
    }

    /// Its address.
    pub fn address(&self) -> Address {
        Address::from_private_key(&self.0)
    }

    /// Signs a 32-byte digest (RFC 6979 deterministic, low s).
    pub fn sign_prehash(&self, prehash: &B256) -> Result<Signature, EthError> {
        let (signature, recovery) = self
            .0
            .sign_prehash_recoverable(prehash.as_slice())
            .map_err(|_| EthError::MalformedSignature)?;
        Ok(Signature::from((signature, recovery)))
    }

    /// Signs `message` the way `personal_sign` does (EIP-191).
    pub fn sign_personal(&self, message: &[u8]) -> Result<Signature, EthError> {
        self.sign_prehash(&personal_message_hash(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cow() -> LocalKey {
        LocalKey::from_seed(b"cow").unwrap()
    }

    #[test]
    fn keccak_of_empty_input() {
        assert_eq!(
            keccak256(b"").to_string(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn eip55_examples_round_trip() {
        // From the EIP-55 specification: mixed, all caps and all lowercase
        // checksums.
        for text in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0xde709f2102306220921060314715629080e2fb77",
        ] {
            let address = parse_address(text).unwrap();
            assert_eq!(address.to_checksummed(), text);
            assert_eq!(parse_checksummed_address(text).unwrap(), address);
        }
        assert_eq!(
            parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
                .unwrap()
                .to_checksummed(),
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        );
        assert_eq!(
            parse_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"),
            Err(EthError::BadChecksum)
        );
        assert_eq!(
            parse_checksummed_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
            Err(EthError::BadChecksum)
        );
        for malformed in [
            "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaedff",
            "0xgaaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        ] {
            assert_eq!(parse_address(malformed), Err(EthError::MalformedAddress));
        }
    }

    #[test]
    fn lower_hex_is_prefixed_and_lowercase() {
        assert_eq!(
            cow().address().to_lower_hex(),
            "0xcd2a3d9f938e13cd947ec05abc7fe734df8dd826"
        );
        assert_eq!(
            cow().address().to_checksummed(),
            "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
        );
    }

    #[test]
    fn personal_sign_round_trips_and_detects_tampering() {
        let key = cow();
        let signature = key.sign_personal(b"hello palm").unwrap();
        let parsed = parse_signature(&signature.to_string()).unwrap();
        assert_eq!(parsed, signature);
        assert_eq!(
            recover(&parsed, &personal_message_hash(b"hello palm")).unwrap(),
            key.address()
        );
        assert_ne!(
            recover(&parsed, &personal_message_hash(b"hello palm!")).unwrap(),
            key.address()
        );
        assert_eq!(parse_signature("0x1234"), Err(EthError::MalformedSignature));
    }

    #[test]
    fn only_the_wallet_encodings_of_v_and_a_low_s_are_accepted() {
        let text = cow().sign_personal(b"v").unwrap().to_string();
        let with_v = |v: &str| format!("{}{v}", &text[..text.len() - 2]);
        let v27 = parse_signature(&with_v("1b")).unwrap();
        assert_eq!(parse_signature(&with_v("00")).unwrap(), v27);
        assert_eq!(
            parse_signature(&with_v("1c")).unwrap(),
            parse_signature(&with_v("01")).unwrap()
        );
        // EIP-155 style v (chain id 1: 37/38) is a transaction encoding.
        assert_eq!(
            parse_signature(&with_v("25")),
            Err(EthError::MalformedSignature)
        );
        // The high-s twin of a valid signature recovers the same address in
        // lenient libraries; Palm refuses it.
        // A signature from k256 has a low s; its twin has n - s.
        assert!(v27.normalize_s().is_none());
        let n = alloy_primitives::U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        let high_s = Signature::new(v27.r(), n - v27.s(), !v27.v());
        assert_eq!(
            parse_signature(&high_s.to_string()),
            Err(EthError::MalformedSignature)
        );
        assert_eq!(
            recover(&high_s, &personal_message_hash(b"v")),
            Err(EthError::MalformedSignature)
        );
        assert!(parse_signature(&text.replace("0x", "")).is_err());
    }
}
