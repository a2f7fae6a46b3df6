//! Translation of `eth_getLogs` answers into [`IncomingTransfer`]s: only well-formed ERC-20
//! `Transfer` logs of a configured token contract to a watched address, inside the requested
//! range, each tagged with its token.
use std::collections::HashSet;

use alloy::{
    primitives::{Address, U256},
    rpc::types::Log,
};

use super::transfer_topic;
use crate::{
    chain::rpc::CallError,
    domain::{amount, network::Token, transfer::IncomingTransfer},
};

/// A watched token contract: address, token, decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Contract {
    pub address: Address,
    pub token: Token,
    pub decimals: u32,
}

/// One log → a transfer to a watched address, `None` for logs to skip, an error for answers
/// that make the whole range suspect (outside the range, missing fields).
pub(super) fn to_transfer(
    log: &Log,
    network: crate::domain::network::Network,
    contracts: &[Contract],
    watched: &HashSet<String>,
    from: u64,
    to: u64,
) -> Result<Option<IncomingTransfer>, CallError> {
    if log.removed {
        return Ok(None);
    }
    let Some(&Contract {
        address: contract,
        token,
        decimals,
    }) = contracts.iter().find(|c| c.address == log.address())
    else {
        // Defence in depth: the filter asked for the configured contracts only.
        tracing::warn!(%network, address = %log.address(), "ignoring a log from another contract");
        return Ok(None);
    };
    let topics = log.topics();
    if topics.len() != 3 || topics[0] != transfer_topic() || log.data().data.len() != 32 {
        return Ok(None);
    }
    let (Some(number), Some(block_hash), Some(tx_hash), Some(log_index)) = (
        log.block_number,
        log.block_hash,
        log.transaction_hash,
        log.log_index,
    ) else {
        return Err(CallError::Failed(
            "eth_getLogs returned a log without block number, block hash, tx hash or log index"
                .into(),
        ));
    };
    if number < from || number > to {
        return Err(CallError::Failed(format!(
            "eth_getLogs for blocks {from}..={to} returned a log of block {number}"
        )));
    }
    let to_address = format!("{:#x}", Address::from_word(topics[2]));
    if !watched.contains(&to_address) {
        return Ok(None);
    }
    let from_address = format!("{:#x}", Address::from_word(topics[1]));
    let value = U256::from_be_slice(&log.data().data);
    let tx = format!("{tx_hash:#x}");
    let amount = u128::try_from(value)
        .ok()
        .and_then(|units| amount::from_base_units(units, decimals));
    let Some(amount) = amount else {
        tracing::error!(%network, %tx, log_index, %value, to = %to_address, "transfer value does not fit the amount type; skipped (not credited) — review it by hand");
        crate::telemetry::metrics::transfer(network, "unrepresentable");
        return Ok(None);
    };
    Ok(Some(IncomingTransfer {
        network,
        token,
        tx_hash: tx,
        log_index: i64::try_from(log_index).unwrap_or(i64::MAX),
        block_number: i64::try_from(number).unwrap_or(i64::MAX),
        block_hash: format!("{block_hash:#x}"),
        token_contract: format!("{contract:#x}"),
        from_address,
        to_address,
        amount,
        block_time: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{B256, Bytes, LogData};

    fn log(contract: Address, to: Address, value: U256, number: u64) -> Log {
        let data = LogData::new_unchecked(
            vec![
                transfer_topic(),
                Address::repeat_byte(0x11).into_word(),
                to.into_word(),
            ],
            Bytes::from(value.to_be_bytes::<32>().to_vec()),
        );
        Log {
            inner: alloy::primitives::Log {
                address: contract,
                data,
            },
            block_hash: Some(B256::repeat_byte(0xbb)),
            block_number: Some(number),
            block_timestamp: None,
            transaction_hash: Some(B256::repeat_byte(0xcc)),
            transaction_index: Some(0),
            log_index: Some(3),
            removed: false,
        }
    }

    #[test]
    fn logs_become_transfers_exactly() {
        let net = crate::domain::network::Network::BSC;
        let contract = Address::repeat_byte(0x55);
        let usdc = Address::repeat_byte(0x66);
        let contracts = [
            Contract {
                address: contract,
                token: Token::USDT,
                decimals: 18,
            },
            Contract {
                address: usdc,
                token: Token::USDC,
                decimals: 6,
            },
        ];
        let to = Address::repeat_byte(0xaa);
        let watched: HashSet<String> = [format!("{to:#x}")].into();
        let v = U256::from(13_890_000_000_000_000_000u128);
        let t = to_transfer(&log(contract, to, v, 10), net, &contracts, &watched, 5, 10)
            .expect("ok")
            .expect("transfer");
        assert_eq!(t.amount.to_string(), "13.890000000000000000");
        assert_eq!(t.to_address, format!("{to:#x}"));
        assert_eq!(t.log_index, 3);
        assert_eq!(t.token, Token::USDT);
        // The other configured token is tagged as such, with its own decimals.
        let c = to_transfer(
            &log(usdc, to, U256::from(2_500_000u64), 10),
            net,
            &contracts,
            &watched,
            5,
            10,
        )
        .expect("ok")
        .expect("transfer");
        assert_eq!(
            (c.token, c.amount.to_string().as_str()),
            (Token::USDC, "2.500000")
        );
        assert_eq!(c.token_contract, format!("{usdc:#x}"));
        // Another contract, an unwatched address, an out-of-range block, a huge value.
        assert!(
            to_transfer(
                &log(Address::repeat_byte(1), to, v, 10),
                net,
                &contracts,
                &watched,
                5,
                10
            )
            .expect("ok")
            .is_none()
        );
        assert!(
            to_transfer(
                &log(contract, Address::repeat_byte(2), v, 10),
                net,
                &contracts,
                &watched,
                5,
                10
            )
            .expect("ok")
            .is_none()
        );
        assert!(to_transfer(&log(contract, to, v, 11), net, &contracts, &watched, 5, 10).is_err());
        assert!(
            to_transfer(
                &log(contract, to, U256::MAX, 10),
                net,
                &contracts,
                &watched,
                5,
                10
            )
            .expect("ok")
            .is_none()
        );
    }
}
