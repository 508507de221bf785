//! The admission path shared by the inference endpoints (chat, embeddings): apply
//! an injected status fault, else ask the account (429 rate limit, 402 balance),
//! and put the rate-limit and model headers on whatever response results.

use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::account::{Admitted, Refusal};
use super::faults::Fault;
use super::models::Model;
use super::respond;
use super::SharedState;

/// Decides whether an inference request runs.
///
/// A status fault (e.g. `overloaded`) answers without counting the request; a body
/// fault lets it run unbilled. The error is the response to send (boxed: it is large). `tokens` (prompt + completion) count against the
/// model's window and `cost_usd` is charged when the request runs normally.
pub fn admit(
    state: &SharedState,
    model: &Model,
    fault: Option<Fault>,
    tokens: u64,
    cost_usd: f64,
) -> Result<Admitted, Box<Response>> {
    let now = Instant::now();
    if let Some(f) = fault {
        if let Some(mut resp) = f.status_response() {
            let snap = state.account.lock().peek(model.id, now);
            let snap = if f == Fault::RateLimit {
                snap.exhausted()
            } else {
                snap
            };
            respond::set_rate_headers(resp.headers_mut(), &snap, true);
            respond::set_model_headers(resp.headers_mut(), model);
            return Err(Box::new(resp));
        }
    }
    let outcome = state.account.lock().admit(
        model.id,
        now,
        respond::utc_day(),
        tokens,
        cost_usd,
        fault.is_none(),
    );
    outcome.map_err(|refusal| {
        let mut resp = match refusal {
            Refusal::RateLimited(snap) => respond::rate_limited(&snap),
            Refusal::InsufficientBalance(snap) => {
                let mut r =
                    respond::error(StatusCode::PAYMENT_REQUIRED, respond::INSUFFICIENT_BALANCE);
                respond::set_rate_headers(r.headers_mut(), &snap, true);
                r
            }
        };
        respond::set_model_headers(resp.headers_mut(), model);
        Box::new(resp)
    })
}

/// Adds the headers of an admitted inference response.
pub fn finish(mut resp: Response, model: &Model, admitted: &Admitted) -> Response {
    let headers: &mut HeaderMap = resp.headers_mut();
    respond::set_rate_headers(headers, &admitted.rate, true);
    respond::set_model_headers(headers, model);
    resp
}
