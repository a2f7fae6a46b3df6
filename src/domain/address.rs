//! Receive-address codecs for TRON and EVM chains.
//!
//! This module owns validation and normalization of the addresses a merchant
//! configures and that chain scanners report: TRON base58check addresses
//! (`T...`) and their 21-byte hex form (`41...`), and EVM `0x` addresses. It is
//! pure: it must never do I/O, never consult a node or an explorer, and never
//! "repair" an address (a bad checksum is an error, not a typo to guess at).
//!
//! EVM addresses are accepted in any letter case (EIP-55 checksums are not
//! enforced) and are always returned lower-case, so that comparisons between
//! configured wallets and on-chain logs are plain string equality.

use thiserror::Error;

/// Version byte of a TRON mainnet address (the `41` in the hex form).
const TRON_VERSION: u8 = 0x41;
/// Characters in a base58check TRON address.
const TRON_BASE58_LEN: usize = 34;
/// Bytes in a TRON address payload: the version byte plus a 20-byte account id.
const TRON_PAYLOAD_LEN: usize = 21;
/// Hex digits in a 20-byte account id (EVM address, or TRON without `41`).
const ACCOUNT_HEX_LEN: usize = 40;
/// The Bitcoin base58 alphabet used by TRON: no `0`, `O`, `I` or `l`.
const BASE58_ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Why an address was rejected. Each message says what is wrong and what a
/// valid address looks like, so it can be shown to the user as is.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    /// The TRON address does not have 34 characters.
    #[error(
        "TRON address must be 34 characters of base58 starting with 'T' (got {len} characters)"
    )]
    TronLength {
        /// Characters in the (trimmed) input.
        len: usize,
    },
    /// The TRON address does not start with `T`.
    #[error(
        "TRON address must be 34 characters of base58 starting with 'T' (it starts with '{found}')"
    )]
    TronPrefix {
        /// The first character of the input.
        found: char,
    },
    /// The TRON address contains a character outside the base58 alphabet.
    #[error(
        "TRON address contains '{found}', which is not a base58 character \
         (base58 has no 0, O, I or l, and no punctuation)"
    )]
    TronCharacter {
        /// The first offending character.
        found: char,
    },
    /// The TRON address decodes, but its checksum does not match.
    #[error(
        "TRON address has a bad checksum: a character is mistyped; copy the address again from the wallet"
    )]
    TronChecksum,
    /// The TRON address is well formed, but is not a mainnet account address.
    #[error(
        "TRON address has version byte 0x{found:02x}; a TRON address must have version byte 0x41"
    )]
    TronVersion {
        /// The version byte found in the payload.
        found: u8,
    },
    /// The TRON hex address is not 40 hex digits with an optional prefix.
    #[error(
        "TRON hex address must be 40 hex digits, optionally prefixed with '41' or '0x' (got {len} characters)"
    )]
    TronHexLength {
        /// Characters in the (trimmed) input.
        len: usize,
    },
    /// The 42-character TRON hex address starts with neither `41` nor `0x`.
    #[error(
        "TRON hex address of 42 characters must start with '41' or '0x' (it starts with '{found}')"
    )]
    TronHexPrefix {
        /// The first two characters of the input.
        found: String,
    },
    /// The TRON hex address contains a character that is not a hex digit.
    #[error("TRON hex address contains '{found}', which is not a hex digit (0-9, a-f)")]
    TronHexCharacter {
        /// The first offending character.
        found: char,
    },
    /// The EVM address does not start with `0x`.
    #[error("EVM address must be 0x followed by 40 hex digits (it does not start with 0x)")]
    EvmPrefix,
    /// The EVM address does not have 40 digits after `0x`.
    #[error("EVM address must be 0x followed by 40 hex digits (got {digits} characters after 0x)")]
    EvmLength {
        /// Characters after the `0x` prefix.
        digits: usize,
    },
    /// The EVM address contains a character that is not a hex digit.
    #[error(
        "EVM address must be 0x followed by 40 hex digits ('{found}' is not a hex digit: use 0-9, a-f)"
    )]
    EvmCharacter {
        /// The first offending character.
        found: char,
    },
    /// The Solana address is not base58 of a 32-byte public key.
    #[error(
        "Solana address must be base58 of a 32-byte public key (32 to 44 characters, no 0, O, I or l)"
    )]
    Solana,
}

/// Validates a Solana address (base58 of 32 bytes: an owner account or a token mint) and
/// returns it trimmed, unchanged (base58 is case-sensitive).
///
/// # Errors
///
/// [`AddressError::Solana`].
pub fn parse_solana(s: &str) -> Result<String, AddressError> {
    let s = s.trim();
    match bs58::decode(s).into_vec() {
        Ok(bytes) if bytes.len() == 32 => Ok(s.to_owned()),
        _ => Err(AddressError::Solana),
    }
}

/// Validates a TRON base58check address (T..., 34 chars, version byte 0x41, 21-byte payload, double-SHA256 checksum) and returns it unchanged.
///
/// Surrounding whitespace is trimmed; "unchanged" means the trimmed text.
///
/// # Errors
///
/// Any `Tron*` base58 variant of [`AddressError`] except the hex ones.
pub fn parse_tron(s: &str) -> Result<String, AddressError> {
    let s = s.trim();
    decode_tron(s)?;
    Ok(s.to_owned())
}

/// TRON base58 -> 21-byte hex with 41 prefix, lower-case, no 0x (e.g. "41a614f803b6fd780986a42c78ec9c7f77e6ded13c").
///
/// # Errors
///
/// The same errors as [`parse_tron`].
pub fn tron_to_hex(s: &str) -> Result<String, AddressError> {
    decode_tron(s.trim()).map(hex::encode)
}

/// Accepts "41" + 40 hex, or 40 hex (TRON event logs omit the 41 prefix), or "0x"+40 hex; returns base58check T-address.
///
/// Hex digits may be in any case; surrounding whitespace is trimmed.
///
/// # Errors
///
/// [`AddressError::TronHexLength`], [`AddressError::TronHexPrefix`] or
/// [`AddressError::TronHexCharacter`].
pub fn tron_from_hex(s: &str) -> Result<String, AddressError> {
    let s = s.trim();
    let len = s.chars().count();
    let digits = if len == ACCOUNT_HEX_LEN {
        s
    } else if len == ACCOUNT_HEX_LEN + 2 {
        // Both prefixes are ASCII, so a successful strip leaves 40 characters.
        s.strip_prefix("41")
            .or_else(|| s.strip_prefix("0x"))
            .ok_or_else(|| AddressError::TronHexPrefix {
                found: s.chars().take(2).collect(),
            })?
    } else {
        return Err(AddressError::TronHexLength { len });
    };
    if let Some(found) = first_non_hex(digits) {
        return Err(AddressError::TronHexCharacter { found });
    }

    let mut payload = Vec::with_capacity(TRON_PAYLOAD_LEN);
    payload.push(TRON_VERSION);
    // Every character was checked above, so decoding cannot fail; the error
    // is still mapped rather than unwrapped.
    payload.extend(hex::decode(digits).map_err(|_| AddressError::TronHexLength { len })?);
    Ok(bs58::encode(payload).with_check().into_string())
}

/// Validates an EVM address: trims, requires 0x + 40 hex digits, checksum-INSENSITIVE (accept any case); returns lower-case 0x form.
///
/// The prefix must be a lower-case `0x`, as every wallet writes it.
///
/// # Errors
///
/// [`AddressError::EvmPrefix`], [`AddressError::EvmLength`] or
/// [`AddressError::EvmCharacter`].
pub fn parse_evm(s: &str) -> Result<String, AddressError> {
    let digits = s.trim().strip_prefix("0x").ok_or(AddressError::EvmPrefix)?;
    let len = digits.chars().count();
    if len != ACCOUNT_HEX_LEN {
        return Err(AddressError::EvmLength { digits: len });
    }
    if let Some(found) = first_non_hex(digits) {
        return Err(AddressError::EvmCharacter { found });
    }
    Ok(format!("0x{}", digits.to_ascii_lowercase()))
}

/// Checks a trimmed TRON base58 address and returns its 21-byte payload
/// (version byte first, checksum removed).
fn decode_tron(s: &str) -> Result<Vec<u8>, AddressError> {
    let len = s.chars().count();
    if len != TRON_BASE58_LEN {
        return Err(AddressError::TronLength { len });
    }
    if let Some(found) = s.chars().next().filter(|&c| c != 'T') {
        return Err(AddressError::TronPrefix { found });
    }
    if let Some(found) = s.chars().find(|&c| !BASE58_ALPHABET.contains(c)) {
        return Err(AddressError::TronCharacter { found });
    }

    let payload = bs58::decode(s)
        .with_check(None)
        .into_vec()
        .map_err(|err| match err {
            bs58::decode::Error::InvalidCharacter { character, .. } => {
                AddressError::TronCharacter { found: character }
            }
            // Checksum mismatch, or too few bytes to hold one: either way
            // the text is not what a wallet would have produced.
            _ => AddressError::TronChecksum,
        })?;

    // 34 base58 characters starting with 'T' always decode to 25 bytes, so
    // the payload is 21 bytes; checked anyway so the invariant is explicit.
    match payload.first() {
        Some(&TRON_VERSION) if payload.len() == TRON_PAYLOAD_LEN => Ok(payload),
        Some(&found) if found != TRON_VERSION => Err(AddressError::TronVersion { found }),
        _ => Err(AddressError::TronLength { len }),
    }
}

/// The first character that is not an ASCII hex digit, if any.
fn first_non_hex(s: &str) -> Option<char> {
    s.chars().find(|c| !c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known pairs. Each was verified independently with a Python script
    // (hashlib double SHA-256 plus a small base58 codec), not with this code.
    const PAIRS: &[(&str, &str)] = &[
        // USDT (TRC-20) contract.
        (
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
            "41a614f803b6fd780986a42c78ec9c7f77e6ded13c",
        ),
        // The zero address.
        (
            "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb",
            "410000000000000000000000000000000000000000",
        ),
        // USDC (TRC-20) contract.
        (
            "TEkxiTehnzSmSe2XqrBj4w32RUN966rdz8",
            "413487b63d30b5b2c87fb7ffa8bcfade38eaac1abe",
        ),
        // The all-ones account id.
        (
            "TZJozAg1ruapycCicgz31GxvYJ1FraLjZa",
            "41ffffffffffffffffffffffffffffffffffffffff",
        ),
        // A made-up account id with every hex digit.
        (
            "TA5DvvvmYbS75o3DKtgy2ATAGVHhpFkRLe",
            "410123456789abcdef0123456789abcdef01234567",
        ),
    ];

    #[test]
    fn known_pairs_round_trip() {
        for &(base58, hex) in PAIRS {
            assert_eq!(parse_tron(base58).unwrap(), base58);
            assert_eq!(tron_to_hex(base58).unwrap(), hex);
            assert_eq!(tron_from_hex(hex).unwrap(), base58);
        }
    }

    #[test]
    fn tron_from_hex_accepts_all_three_forms_in_any_case() {
        let (base58, hex) = PAIRS[0];
        let account = &hex[2..];
        assert_eq!(tron_from_hex(account).unwrap(), base58);
        assert_eq!(tron_from_hex(&format!("0x{account}")).unwrap(), base58);
        assert_eq!(tron_from_hex(&hex.to_ascii_uppercase()).unwrap(), base58);
        assert_eq!(tron_from_hex(&format!("  {hex}\n")).unwrap(), base58);
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        let (base58, hex) = PAIRS[0];
        assert_eq!(parse_tron(&format!(" \t{base58} \n")).unwrap(), base58);
        assert_eq!(tron_to_hex(&format!(" {base58}")).unwrap(), hex);
    }

    #[test]
    fn tron_wrong_length() {
        assert_eq!(
            parse_tron("TR7NHqjeKQxG"),
            Err(AddressError::TronLength { len: 12 })
        );
        assert_eq!(
            parse_tron("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6tt"),
            Err(AddressError::TronLength { len: 35 })
        );
        assert_eq!(parse_tron("   "), Err(AddressError::TronLength { len: 0 }));
        let message = parse_tron("TR7NHqjeKQxG").unwrap_err().to_string();
        assert_eq!(
            message,
            "TRON address must be 34 characters of base58 starting with 'T' (got 12 characters)"
        );
    }

    #[test]
    fn tron_bad_checksum() {
        // Last character of the USDT contract changed from 't' to 'u'.
        assert_eq!(
            parse_tron("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u"),
            Err(AddressError::TronChecksum)
        );
        // A character in the middle changed.
        assert_eq!(
            tron_to_hex("TR7NHqjeKQxGTCi9q8ZY4pL8otSzgjLj6t"),
            Err(AddressError::TronChecksum)
        );
        assert!(
            AddressError::TronChecksum
                .to_string()
                .contains("bad checksum")
        );
    }

    #[test]
    fn tron_wrong_prefix() {
        // A valid base58check string of 34 characters with Bitcoin's version 0.
        assert_eq!(
            parse_tron("1G9AHnMvAgqKJ2eWErupYfdzu6hgW14EeZ"),
            Err(AddressError::TronPrefix { found: '1' })
        );
        assert_eq!(
            parse_tron("0xa614f803b6fd780986a42c78ec9c7f77"),
            Err(AddressError::TronPrefix { found: '0' })
        );
    }

    #[test]
    fn tron_wrong_version_byte() {
        // Starts with 'T' and has a valid checksum, but the version is 0x40.
        assert_eq!(
            parse_tron("T1mmJjSMcEVPdma3oiEDah4MBPC3yQsKfi"),
            Err(AddressError::TronVersion { found: 0x40 })
        );
    }

    #[test]
    fn tron_non_base58_characters() {
        let good = PAIRS[0].0;
        for bad in ['0', 'O', 'I', 'l', '-', 'é'] {
            let mut s: String = good.chars().take(10).collect();
            s.push(bad);
            s.extend(good.chars().skip(11));
            assert_eq!(
                parse_tron(&s),
                Err(AddressError::TronCharacter { found: bad }),
                "character {bad:?}"
            );
        }
    }

    #[test]
    fn tron_hex_errors() {
        assert_eq!(
            tron_from_hex("41a614f803b6fd780986a42c78ec9c7f77e6ded1"),
            // 40 characters: read as an account id without the 41 prefix.
            // (Python-verified.)
            Ok("TFxKt6qB8DJpHke6an8iBuc11dtM4TLtWB".to_owned())
        );
        assert_eq!(
            tron_from_hex("41a614f803b6fd780986a42c78ec9c7f77e6ded13"),
            Err(AddressError::TronHexLength { len: 41 })
        );
        assert_eq!(
            tron_from_hex("42a614f803b6fd780986a42c78ec9c7f77e6ded13c"),
            Err(AddressError::TronHexPrefix {
                found: "42".to_owned()
            })
        );
        assert_eq!(
            tron_from_hex("41g614f803b6fd780986a42c78ec9c7f77e6ded13c"),
            Err(AddressError::TronHexCharacter { found: 'g' })
        );
        assert_eq!(
            tron_from_hex(""),
            Err(AddressError::TronHexLength { len: 0 })
        );
    }

    #[test]
    fn evm_accepts_any_case_and_lower_cases() {
        let lower = "0xdac17f958d2ee523a2206206994597c13d831ec7";
        assert_eq!(parse_evm(lower).unwrap(), lower);
        // EIP-55 mixed case, all upper case, and a wrong EIP-55 checksum.
        for input in [
            "0xdAC17F958D2ee523a2206206994597C13D831ec7",
            "0xDAC17F958D2EE523A2206206994597C13D831EC7",
            "0xdac17f958d2ee523a2206206994597c13d831eC7",
            "  0xdAC17F958D2ee523a2206206994597C13D831ec7\n",
        ] {
            assert_eq!(parse_evm(input).unwrap(), lower, "input {input:?}");
        }
    }

    #[test]
    fn evm_wrong_length() {
        assert_eq!(
            parse_evm("0xdac17f958d2ee523a2206206994597c13d831ec"),
            Err(AddressError::EvmLength { digits: 39 })
        );
        assert_eq!(
            parse_evm("0xdac17f958d2ee523a2206206994597c13d831ec70"),
            Err(AddressError::EvmLength { digits: 41 })
        );
        assert_eq!(parse_evm("0x"), Err(AddressError::EvmLength { digits: 0 }));
    }

    #[test]
    fn evm_non_hex_and_missing_prefix() {
        assert_eq!(
            parse_evm("0xdac17f958d2ee523a2206206994597c13d831ecz"),
            Err(AddressError::EvmCharacter { found: 'z' })
        );
        assert_eq!(
            parse_evm("dac17f958d2ee523a2206206994597c13d831ec7"),
            Err(AddressError::EvmPrefix)
        );
        assert_eq!(
            parse_evm("0Xdac17f958d2ee523a2206206994597c13d831ec7"),
            Err(AddressError::EvmPrefix)
        );
        assert_eq!(parse_evm(""), Err(AddressError::EvmPrefix));
        assert!(
            AddressError::EvmPrefix
                .to_string()
                .starts_with("EVM address must be 0x followed by 40 hex digits")
        );
    }

    #[test]
    fn evm_address_is_not_a_tron_address() {
        assert_eq!(
            parse_tron("0xdac17f958d2ee523a2206206994597c13d831ec7"),
            Err(AddressError::TronLength { len: 42 })
        );
    }
}
