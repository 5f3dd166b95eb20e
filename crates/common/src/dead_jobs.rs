//! `/admin/jobs/dead`: the jobs a service's queue gave up on, and their replay. Every service
//! with a queue serves the same two routes with the same answers; what differs (orders
//! reopens the order a dead checkout abandoned) is the service's [`DeadLetters::before_replay`].

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde_json::{Map, Value};

use crate::{
    Problem,
    queue::{DeadJob, Queue},
};

/// How many dead jobs the list shows at most.
pub const LIST_LIMIT: i64 = 500;

/// A service state whose queue has dead letters.
pub trait DeadLetters: Clone + Send + Sync + 'static {
    /// The service's queue.
    fn queue(&self) -> &Queue;

    /// Undoes what the dead job's end did, before it runs again; answers fields added to the
    /// replay's answer.
    fn before_replay(
        &self,
        job: &DeadJob,
    ) -> impl Future<Output = Result<Map<String, Value>, Problem>> + Send;
}

/// The two routes, for the service's admin router (which puts them behind its bearer).
pub fn router<S: DeadLetters>() -> Router<S> {
    Router::new()
        .route("/admin/jobs/dead", get(list::<S>))
        .route("/admin/jobs/dead/{id}/replay", post(replay::<S>))
}

/// Jobs out of attempts, newest first.
#[utoipa::path(get, path = "/admin/jobs/dead", tag = "admin",
    responses(
        (status = 200, description = "Dead jobs, newest first (at most 500)", body = [DeadJob]),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list<S: DeadLetters>(State(state): State<S>) -> Result<Json<Vec<DeadJob>>, Problem> {
    let dead = state.queue().dead(LIST_LIMIT).await;
    Ok(Json(dead.map_err(|e| Problem::database(&e))?))
}

/// Runs a dead job again with fresh attempts, after the service has undone its end.
#[utoipa::path(post, path = "/admin/jobs/dead/{id}/replay", tag = "admin",
    params(("id" = i64, Path, description = "The dead job's id; anything else names no job (404)")),
    responses(
        (status = 202, description = "Queued again: `job_id`, and what the service undid first", body = Object),
        (status = 404, description = "No such dead job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn replay<S: DeadLetters>(
    State(state): State<S>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Map<String, Value>>), Problem> {
    let no_job = || Problem::not_found("The dead job");
    // Parsed here, not by the extractor, so a malformed id is a problem+json 404 too.
    let id: i64 = id.parse().map_err(|_| no_job())?;
    let queue = state.queue();
    let job = queue
        .dead_job(id)
        .await
        .map_err(|e| Problem::database(&e))?
        .ok_or_else(no_job)?;
    let mut answer = state.before_replay(&job).await?;
    if !queue.replay(id).await.map_err(|e| Problem::database(&e))? {
        return Err(no_job());
    }
    answer.insert("job_id".to_owned(), id.into());
    Ok((StatusCode::ACCEPTED, Json(answer)))
}
