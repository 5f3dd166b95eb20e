//! `/__legacy/faults`: read and set the monolith's latency and failure share at run time.
//! A stand-in's test hook, like stripe-sim's `/_sim` controls: the monolith is never deployed
//! where a shopper could reach this path.

use axum::{Json, Router, extract::State, routing::get};
use common::{ApiJson, Problem};

use crate::{
    AppState,
    faults::{FaultSettings, FaultsBody},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/__legacy/faults", get(read).put(set))
}

async fn read(State(app): State<AppState>) -> Json<FaultsBody> {
    Json(app.faults.get().into())
}

async fn set(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<FaultsBody>,
) -> Result<Json<FaultsBody>, Problem> {
    let settings = FaultSettings::from(&body);
    settings
        .check()
        .map_err(|(field, reason)| Problem::invalid_field(field, reason))?;
    app.faults.set(settings);
    tracing::info!(
        latency_ms = body.latency_ms,
        error_rate = body.error_rate,
        "faults changed"
    );
    Ok(Json(app.faults.get().into()))
}
