//! Solana addresses: base58 public keys (32 bytes) and the associated token account (ATA)
//! derivation — the program-derived address of `[owner, token program, mint]` under the ATA
//! program, i.e. the first bump from 255 down whose
//! `sha256(seeds ‖ bump ‖ program ‖ "ProgramDerivedAddress")` is *not* an ed25519 point.
//!
//! Pure functions; never performs I/O. The ATA of an off-curve owner (a PDA such as a
//! multisig vault) is derived like any other: watching does not need the owner to sign.
use curve25519_dalek::edwards::CompressedEdwardsY;
use sha2::{Digest, Sha256};

/// The SPL Token program (USDT and USDC on Solana mainnet live here).
pub const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
/// The SPL Token-2022 program (e.g. PYUSD).
pub const TOKEN_2022_PROGRAM: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
/// The Associated Token Account program.
pub const ATA_PROGRAM: &str = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
/// Tether USD (USDT) on Solana mainnet, 6 decimals, SPL Token program.
pub const USDT_MINT: &str = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB";
/// USD Coin (USDC) on Solana mainnet, 6 decimals, SPL Token program.
pub const USDC_MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";

/// A 32-byte Solana public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pubkey(pub [u8; 32]);

/// Why a text is not a Solana address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not base58 (Solana addresses use the Bitcoin alphabet: no 0, O, I or l)")]
    NotBase58(String),
    #[error(
        "`{0}` decodes to {1} bytes; a Solana address is 32 bytes (32 to 44 base58 characters)"
    )]
    Length(String, usize),
}

impl Pubkey {
    /// Parses a base58 address (case-sensitive, surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let t = text.trim();
        let bytes = bs58::decode(t)
            .into_vec()
            .map_err(|_| AddressError::NotBase58(crate::redact::truncate(t, 60)))?;
        let n = bytes.len();
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AddressError::Length(crate::redact::truncate(t, 60), n))?;
        Ok(Pubkey(arr))
    }

    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).into_string()
    }

    /// Whether the key is an ed25519 point (a key someone can hold); program-derived
    /// addresses never are.
    pub fn is_on_curve(&self) -> bool {
        CompressedEdwardsY(self.0).decompress().is_some()
    }
}

/// Normalises a Solana wallet (owner) address: valid base58 of 32 bytes, re-encoded.
pub fn parse_owner(text: &str) -> Result<String, AddressError> {
    Pubkey::parse(text).map(|k| k.to_base58())
}

/// `find_program_address(seeds, program)`: the first bump from 255 down that gives an
/// off-curve hash, with that bump. `None` only if none of the 256 does (never seen).
pub fn find_program_address(seeds: &[&[u8]], program: &Pubkey) -> Option<(Pubkey, u8)> {
    for bump in (0..=255u8).rev() {
        let mut h = Sha256::new();
        for s in seeds {
            h.update(s);
        }
        h.update([bump]);
        h.update(program.0);
        h.update(b"ProgramDerivedAddress");
        let key = Pubkey(h.finalize().into());
        if !key.is_on_curve() {
            return Some((key, bump));
        }
    }
    None
}

/// The associated token account of `owner` for `mint` under `token_program`.
pub fn associated_token_address(
    owner: &Pubkey,
    mint: &Pubkey,
    token_program: &Pubkey,
) -> Option<Pubkey> {
    let ata = Pubkey::parse(ATA_PROGRAM).ok()?;
    find_program_address(&[&owner.0, &token_program.0, &mint.0], &ata).map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Pubkey {
        Pubkey::parse(s).expect("valid key")
    }

    fn ata(owner: &str, mint: &str, program: &str) -> String {
        associated_token_address(&key(owner), &key(mint), &key(program))
            .expect("derivable")
            .to_base58()
    }

    /// Published (owner, mint, ATA) triples.
    #[test]
    fn derives_known_associated_token_accounts() {
        // spl-token JS tests (token/js/test/unit/index.test.ts, getAssociatedTokenAddress).
        assert_eq!(
            ata(
                "B8UwBUUnKwCyKuGMbFKWaG7exYdDk2ozZrPg72NyVbfj",
                "7o36UsWR1JQLpZ9PE2gn9L4SQ69CNNiWAXd4Jt7rqz9Z",
                TOKEN_PROGRAM
            ),
            "DShWnroshVbeUp28oopA3Pu7oFPDBtC1DBmPECXXAQ9n"
        );
        // The same test, owner off the curve (an ATA owning an ATA, allowOwnerOffCurve).
        assert!(!key("DShWnroshVbeUp28oopA3Pu7oFPDBtC1DBmPECXXAQ9n").is_on_curve());
        assert_eq!(
            ata(
                "DShWnroshVbeUp28oopA3Pu7oFPDBtC1DBmPECXXAQ9n",
                "7o36UsWR1JQLpZ9PE2gn9L4SQ69CNNiWAXd4Jt7rqz9Z",
                TOKEN_PROGRAM
            ),
            "F3DmXZFqkfEWFA7MN2vDPs813GeEWPaT6nLk4PSGuWJd"
        );
        // Mainnet PYUSD (Token-2022) holders (micro-sol-signer's tests).
        assert_eq!(
            ata(
                "22Wnk8PwyWZV7BfkZGJEKT9jGGdtvu7xY6EXeRh7zkBa",
                "2b1kV6DkPAnxd5ixfnxCpjxmKwqjjaYmCZfHsFu24GXo",
                TOKEN_2022_PROGRAM
            ),
            "5nu6HDY7t1Ds8oPNsArrhb1rzvRqmGubyteyAUncFyNb"
        );
        assert_eq!(
            ata(
                "BNXnu85Kt1VXSYYYNMXtRfRrscyETxcdsEiTLSToQYZa",
                "2b1kV6DkPAnxd5ixfnxCpjxmKwqjjaYmCZfHsFu24GXo",
                TOKEN_2022_PROGRAM
            ),
            "8Ycmt6GTtXcmaTXXRZVLATBQHKKFRaFpD6DD4wx81M4"
        );
        // A mainnet USDC account.
        assert_eq!(
            ata(
                "86xCnPeV69n6t3DnyGvkKobf9FdN2H9oiVDdaMpo2MMY",
                USDC_MINT,
                TOKEN_PROGRAM
            ),
            "9SHQTA66Ekh7ZgMnKWsjxXk6DwXku8przs45E8bcEe38"
        );
        // The token program is a seed: Token-2022 gives another account.
        assert_ne!(
            ata(
                "86xCnPeV69n6t3DnyGvkKobf9FdN2H9oiVDdaMpo2MMY",
                USDC_MINT,
                TOKEN_2022_PROGRAM
            ),
            "9SHQTA66Ekh7ZgMnKWsjxXk6DwXku8przs45E8bcEe38"
        );
    }

    #[test]
    fn parses_and_refuses_addresses() {
        for program in [
            TOKEN_PROGRAM,
            TOKEN_2022_PROGRAM,
            ATA_PROGRAM,
            USDT_MINT,
            USDC_MINT,
        ] {
            assert_eq!(parse_owner(program).expect("valid"), program);
        }
        assert_eq!(
            parse_owner(" 11111111111111111111111111111111 ").expect("system program"),
            "11111111111111111111111111111111"
        );
        assert!(matches!(
            parse_owner("0x00000000000000000000000000000000000000aa"),
            Err(AddressError::NotBase58(_))
        ));
        assert!(matches!(
            parse_owner("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"),
            Err(AddressError::Length(_, 25))
        ));
        // A wallet key is on the curve.
        assert!(key("86xCnPeV69n6t3DnyGvkKobf9FdN2H9oiVDdaMpo2MMY").is_on_curve());
    }
}
