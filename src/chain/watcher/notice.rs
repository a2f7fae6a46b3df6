//! A transfer the watcher flagged instead of crediting (late, partial, overpaid, paid twice,
//! unmatched) raises a Telegram `transfer` notice, as a durable job after the range committed.
use super::Watcher;
use crate::{
    chain::Scanner,
    domain::{notice::Notice, transfer::IncomingTransfer},
    service::{self, order::CreditOutcome},
};

impl<S: Scanner> Watcher<S> {
    pub(super) async fn flagged_notice(&self, outcome: &CreditOutcome, t: &IncomingTransfer) {
        let order_id = match outcome {
            CreditOutcome::Late { order_id }
            | CreditOutcome::PaidTwice { order_id }
            | CreditOutcome::Partial { order_id }
            | CreditOutcome::Overpaid { order_id } => Some(*order_id),
            CreditOutcome::Unmatched => None,
            CreditOutcome::Paid { .. } | CreditOutcome::Duplicate => return,
        };
        let notice = Notice::Transfer {
            kind: outcome.kind().to_string(),
            network: t.network.as_str().to_string(),
            tx_hash: t.tx_hash.clone(),
            amount: t.amount.normalize().to_string(),
            to: t.to_address.clone(),
            order_id,
        };
        if let Err(e) = service::telegram::raise(&self.queue, notice).await {
            // The transfer is recorded and visible to admins; only the chat message is lost.
            tracing::warn!(tx = %t.tx_hash, error = %e, "could not queue the transfer notice");
        }
    }
}
