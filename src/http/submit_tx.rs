//! `POST /pay/submit-tx-hash/{trade_id}` (GMWalletApp/epusdt's route): the payer says "I have
//! paid, here is my transaction" (`block_transaction_id`, JSON or form). The transaction is
//! looked up on the order's network now and credited when it pays the order
//! ([`crate::chain::TxLookup::submit`]); the reply is upstream's `{trade_id, status,
//! block_transaction_id}`. Public like the checkout page: rate limited per client by the
//! middleware, and the lookup itself is bounded (one per request, a few at once).
use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::json;

use super::reply::{self, ApiError};
use crate::{
    protocol::{Params, fields},
    service::order::{self, OrderError, OrderRules},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/pay/submit-tx-hash/{trade_id}", post(submit_tx_hash))
}

async fn submit_tx_hash(
    State(state): State<AppState>,
    Path(trade_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    async {
        crate::domain::order::check_trade_id(&trade_id)
            .map_err(|_| ApiError::from(OrderError::NotFound))?;
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let p = Params::from_body(ct, &body)?;
        // Long enough for any spelling the format check below explains.
        let hash = fields::text(&p, "block_transaction_id", 200, true)?;
        let o = order::find_by_trade_id(&state.db, &trade_id)
            .await?
            .ok_or(OrderError::NotFound)?;
        let done = state
            .tx_lookup
            .submit(
                &state.db,
                &state.queue,
                &OrderRules::from_config(&state.config),
                &o,
                &hash,
            )
            .await?;
        Ok::<_, ApiError>(reply::success(json!({
            "trade_id": done.trade_id,
            "status": done.status.code(),
            "block_transaction_id": done.block_transaction_id,
        })))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
