//! Ethereum primitives Palm verifies with: keccak-256, EIP-55 addresses,
//! 65-byte recoverable secp256k1 signatures, and EIP-191 `personal_sign`
//! message hashing. Signing is here too, for tests and the development CLI.

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};
use tiny_keccak::{Hasher, Keccak};

/// Keccak-256 (Ethereum's hash, not NIST SHA3-256).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak::v256();
    hasher.update(data);
    let mut out = [0_u8; 32];
    hasher.finalize(&mut out);
    out
}

/// Why an Ethereum value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    /// Not `0x` followed by 40 hex digits.
    #[error("not an Ethereum address")]
    MalformedAddress,
    /// Mixed-case address whose EIP-55 checksum does not match.
    #[error("address checksum (EIP-55) does not match")]
    BadChecksum,
    /// Not `0x` followed by 130 hex digits with v of 0, 1, 27 or 28.
    #[error("not a 65-byte signature")]
    MalformedSignature,
    /// The signature does not recover to any public key.
    #[error("signature does not recover a signer")]
    Unrecoverable,
}

/// A 20-byte account address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address([u8; 20]);

impl Address {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The address of a public key: the last 20 bytes of the keccak of its
    /// uncompressed encoding without the 0x04 prefix.
    pub fn from_verifying_key(key: &VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        let hash = keccak256(&point.as_bytes()[1..]);
        let mut out = [0_u8; 20];
        out.copy_from_slice(&hash[12..]);
        Self(out)
    }

    /// `0x`-prefixed lowercase hex: the form Palm stores and compares.
    pub fn to_lower_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }

    /// EIP-55 mixed-case checksummed form, as wallets display it.
    pub fn to_checksummed(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        out
    }

    /// Parses an address that must be in EIP-55 checksummed form (as
    /// EIP-4361 requires), rather than accepting any case.
    pub fn parse_checksummed(text: &str) -> Result<Self, EthError> {
        let address: Self = text.parse()?;
        if address.to_checksummed() != text {
            return Err(EthError::BadChecksum);
        }
        Ok(address)
    }
}

impl FromStr for Address {
    type Err = EthError;

    /// Accepts all-lowercase, all-uppercase, or a correctly checksummed mix.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix("0x").ok_or(EthError::MalformedAddress)?;
        if digits.len() != 40 {
            return Err(EthError::MalformedAddress);
        }
        let mut bytes = [0_u8; 20];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| EthError::MalformedAddress)?;
        let address = Self(bytes);
        let mixed = digits.chars().any(|c| c.is_ascii_lowercase())
            && digits.chars().any(|c| c.is_ascii_uppercase());
        if mixed && address.to_checksummed() != text {
            return Err(EthError::BadChecksum);
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksummed())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_checksummed())
    }
}

/// A recoverable signature: r ‖ s ‖ v, 65 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    rs: [u8; 64],
    /// Recovery id, 0 or 1 (wallets send 27/28; both are accepted).
    recovery: u8,
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl Signature {
    /// `0x` + r ‖ s ‖ v with v as 27 or 28, the form wallets return.
    pub fn to_hex(&self) -> String {
        let mut bytes = [0_u8; 65];
        bytes[..64].copy_from_slice(&self.rs);
        bytes[64] = self.recovery + 27;
        format!("0x{}", hex::encode(bytes))
    }

    /// The signer of `prehash` (a 32-byte digest).
    pub fn recover(&self, prehash: &[u8; 32]) -> Result<Address, EthError> {
        let signature =
            EcdsaSignature::from_slice(&self.rs).map_err(|_| EthError::MalformedSignature)?;
        // Ethereum (EIP-2) only accepts low-s signatures; a high-s one is
        // the malleated twin of a valid signature.
        if signature.normalize_s().is_some() {
            return Err(EthError::MalformedSignature);
        }
        let recovery = RecoveryId::from_byte(self.recovery).ok_or(EthError::MalformedSignature)?;
        let key = VerifyingKey::recover_from_prehash(prehash, &signature, recovery)
            .map_err(|_| EthError::Unrecoverable)?;
        Ok(Address::from_verifying_key(&key))
    }
}

impl FromStr for Signature {
    type Err = EthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text
            .strip_prefix("0x")
            .ok_or(EthError::MalformedSignature)?;
        let mut bytes = [0_u8; 65];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| EthError::MalformedSignature)?;
        let recovery = match bytes[64] {
            0 | 27 => 0,
            1 | 28 => 1,
            _ => return Err(EthError::MalformedSignature),
        };
        let mut rs = [0_u8; 64];
        rs.copy_from_slice(&bytes[..64]);
        Ok(Self { rs, recovery })
    }
}

/// EIP-191 version 0x45 (`personal_sign`) digest of `message`.
pub fn personal_message_hash(message: &[u8]) -> [u8; 32] {
    let mut data = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    data.extend_from_slice(message);
    keccak256(&data)
}

/// A local secp256k1 key, for tests and the development CLI only: services
/// verify, they never sign.
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

    /// Its address.
    pub fn address(&self) -> Address {
        Address::from_verifying_key(self.0.verifying_key())
    }

    /// Signs a 32-byte digest (RFC 6979 deterministic, low-s).
    pub fn sign_prehash(&self, prehash: &[u8; 32]) -> Result<Signature, EthError> {
        let (signature, recovery) = self
            .0
            .sign_prehash_recoverable(prehash)
            .map_err(|_| EthError::MalformedSignature)?;
        let mut rs = [0_u8; 64];
        rs.copy_from_slice(&signature.to_bytes());
        Ok(Signature {
            rs,
            recovery: recovery.to_byte(),
        })
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
        LocalKey::from_bytes(&keccak256(b"cow")).unwrap()
    }

    #[test]
    fn keccak_of_empty_input() {
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn eip55_examples_round_trip() {
        // From the EIP-55 specification.
        for text in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let address: Address = text.parse().unwrap();
            assert_eq!(address.to_checksummed(), text);
            assert_eq!(Address::parse_checksummed(text).unwrap(), address);
        }
        assert_eq!(
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
                .parse::<Address>()
                .unwrap()
                .to_checksummed(),
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        );
        assert_eq!(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD".parse::<Address>(),
            Err(EthError::BadChecksum)
        );
        assert_eq!(
            Address::parse_checksummed("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
            Err(EthError::BadChecksum)
        );
        assert_eq!(
            "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".parse::<Address>(),
            Err(EthError::MalformedAddress)
        );
    }

    #[test]
    fn the_cow_key_has_the_eip712_example_address() {
        assert_eq!(
            cow().address().to_lower_hex(),
            "0xcd2a3d9f938e13cd947ec05abc7fe734df8dd826"
        );
    }

    #[test]
    fn personal_sign_round_trips_and_detects_tampering() {
        let key = cow();
        let signature = key.sign_personal(b"hello palm").unwrap();
        let parsed: Signature = signature.to_hex().parse().unwrap();
        assert_eq!(
            parsed
                .recover(&personal_message_hash(b"hello palm"))
                .unwrap(),
            key.address()
        );
        assert_ne!(
            parsed
                .recover(&personal_message_hash(b"hello palm!"))
                .unwrap(),
            key.address()
        );
        assert_eq!(
            "0x1234".parse::<Signature>(),
            Err(EthError::MalformedSignature)
        );
    }
}
