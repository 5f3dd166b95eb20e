//! The admin API (`/admin/flags`, admin bearer token): read the flags this process routes
//! by, ramp or switch a group, roll it back, and read who changed what, why and when. Every
//! change goes through Postgres and is audited; the actor comes from `X-Actor`.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    middleware,
    routing::{get, post},
};
use common::{ApiJson, FieldError, Problem, Secret};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::{
    flags::{
        Flags,
        snapshot::FlagRecord,
        store::{Actor, AuditEntry, Change},
    },
    group::Group,
};

/// The OpenAPI description of the admin API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gateway admin API",
        description = "Route flags of the strangler-fig gateway. Every call needs \
                       `Authorization: Bearer <ADMIN_TOKEN>`; `X-Actor` names who acts."
    ),
    paths(list, get_one, change, roll_back, audit),
    components(schemas(
        Problem,
        FieldError,
        FlagRecord,
        FlagList,
        FlagUpdate,
        RollbackRequest,
        AuditEntry,
        AuditLog
    ))
)]
pub struct ApiDoc;

/// The admin routes behind the bearer token.
pub fn router(flags: Arc<Flags>, token: Secret) -> Router {
    Router::new()
        .route("/admin/flags", get(list))
        .route("/admin/flags/{name}", get(get_one).put(change))
        .route("/admin/flags/{name}/rollback", post(roll_back))
        .route("/admin/flags/{name}/audit", get(audit))
        .with_state(flags)
        .route_layer(middleware::from_fn_with_state(
            token,
            common::auth::require_bearer,
        ))
}

/// Every flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagList {
    /// The flags this process routes by.
    pub flags: Vec<FlagRecord>,
}

/// A change to a flag; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagUpdate {
    /// On or off.
    pub enabled: Option<bool>,
    /// 0–100.
    pub rollout_percent: Option<i64>,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

/// The optional body of a rollback.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Why, for the audit log.
    pub reason: Option<String>,
}

/// A flag's audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLog {
    /// The flag's name.
    pub flag: String,
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

/// How much of the audit log to answer.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries at most (1–1000, default 100).
    pub limit: Option<i64>,
}

const MAX_TEXT: usize = 500;

/// The flags this process routes by.
#[utoipa::path(
    get, path = "/admin/flags", tag = "flags",
    responses(
        (status = 200, description = "Every flag", body = FlagList),
        (status = 401, description = "No bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong bearer token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(State(flags): State<Arc<Flags>>) -> Json<FlagList> {
    Json(FlagList {
        flags: flags.snapshot().records(),
    })
}

/// One flag as this process routes by it.
#[utoipa::path(
    get, path = "/admin/flags/{name}", tag = "flags",
    params(("name" = String, Path, description = "cart, orders or payments")),
    responses(
        (status = 200, description = "The flag", body = FlagRecord),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(flags))]
pub async fn get_one(
    State(flags): State<Arc<Flags>>,
    Path(name): Path<String>,
) -> Result<Json<FlagRecord>, Problem> {
    let group = group(&name)?;
    Ok(Json(FlagRecord::new(group, *flags.snapshot().get(group))))
}

/// Switches or ramps a flag; the change reaches every gateway and is audited.
#[utoipa::path(
    put, path = "/admin/flags/{name}", tag = "flags",
    params(("name" = String, Path, description = "cart, orders or payments")),
    request_body = FlagUpdate,
    responses(
        (status = 200, description = "The flag as changed", body = FlagRecord),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid change", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flag store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(flags, headers, body))]
pub async fn change(
    State(flags): State<Arc<Flags>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FlagUpdate>,
) -> Result<Json<FlagRecord>, Problem> {
    let group = group(&name)?;
    let actor = actor(&headers)?;
    let (change, reason) = parse_update(body)?;
    let actor = Actor {
        name: &actor,
        action: "update",
        reason: reason.as_deref(),
    };
    write(&flags, group, change, actor).await
}

/// Sets a flag's rollout to 0: new carts and orders go back to legacy (existing ones stay).
#[utoipa::path(
    post, path = "/admin/flags/{name}/rollback", tag = "flags",
    params(("name" = String, Path, description = "cart, orders or payments")),
    request_body(content = Option<RollbackRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "The flag, rolled back", body = FlagRecord),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flag store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(flags, headers, body))]
pub async fn roll_back(
    State(flags): State<Arc<Flags>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<FlagRecord>, Problem> {
    let group = group(&name)?;
    let actor = actor(&headers)?;
    let request: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "The body is not valid JSON",
            )
            .detail(e.to_string())
        })?
    };
    let reason = text("reason", request.reason)?;
    let change = Change {
        enabled: None,
        rollout_percent: Some(0),
    };
    let actor = Actor {
        name: &actor,
        action: "rollback",
        reason: reason.as_deref(),
    };
    write(&flags, group, change, actor).await
}

/// Who changed a flag, from what to what, why and when; newest first.
#[utoipa::path(
    get, path = "/admin/flags/{name}/audit", tag = "flags",
    params(("name" = String, Path, description = "cart, orders or payments"), AuditQuery),
    responses(
        (status = 200, description = "The audit log", body = AuditLog),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flag store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(flags, query))]
pub async fn audit(
    State(flags): State<Arc<Flags>>,
    Path(name): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditLog>, Problem> {
    let group = group(&name)?;
    let Query(query) = query.map_err(|e| Problem::invalid_field("limit", e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            "must be between 1 and 1000",
        ));
    }
    let entries = flags
        .audit(group, limit)
        .await
        .map_err(|e| Problem::unavailable("The flag store", &e))?;
    Ok(Json(AuditLog {
        flag: group.name().to_owned(),
        entries,
    }))
}

async fn write(
    flags: &Flags,
    group: Group,
    change: Change,
    actor: Actor<'_>,
) -> Result<Json<FlagRecord>, Problem> {
    match flags.change(group, change, actor).await {
        Ok(Some(record)) => Ok(Json(record)),
        Ok(None) => Err(Problem::not_found("The flag")),
        Err(e) => Err(Problem::unavailable("The flag store", &e)),
    }
}

fn group(name: &str) -> Result<Group, Problem> {
    Group::parse(name).ok_or_else(|| Problem::not_found(&format!("The flag {name:?}")))
}

fn parse_update(body: FlagUpdate) -> Result<(Change, Option<String>), Problem> {
    let mut errors = Vec::new();
    let rollout_percent = match body.rollout_percent {
        None => None,
        Some(p) => match u8::try_from(p) {
            Ok(p) if p <= 100 => Some(p),
            _ => {
                errors.push(FieldError::new(
                    "rollout_percent",
                    "must be between 0 and 100",
                ));
                None
            }
        },
    };
    if body.enabled.is_none() && body.rollout_percent.is_none() {
        errors.push(FieldError::new(
            "rollout_percent",
            "give enabled, rollout_percent or both",
        ));
    }
    let reason = match text("reason", body.reason) {
        Ok(reason) => reason,
        Err(_) => {
            errors.push(FieldError::new(
                "reason",
                format!("at most {MAX_TEXT} characters"),
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let change = Change {
        enabled: body.enabled,
        rollout_percent,
    };
    Ok((change, reason))
}

fn actor(headers: &HeaderMap) -> Result<String, Problem> {
    match headers.get("x-actor").map(|v| v.to_str()) {
        None => Ok("admin".to_owned()),
        Some(Ok(actor)) if !actor.trim().is_empty() && actor.len() <= 100 => {
            Ok(actor.trim().to_owned())
        }
        Some(_) => Err(Problem::invalid_field(
            "X-Actor",
            "must be 1 to 100 visible ASCII characters",
        )),
    }
}

fn text(field: &str, value: Option<String>) -> Result<Option<String>, Problem> {
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) if v.chars().count() > MAX_TEXT => Err(Problem::invalid_field(
            field,
            format!("at most {MAX_TEXT} characters"),
        )),
        other => Ok(other),
    }
}
