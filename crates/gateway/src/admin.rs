//! The admin API (`/admin/flags`, admin bearer tokens): read the flags this process routes
//! by, ramp or switch a group, roll it back, and read who changed what, why and when. Every
//! change goes through Postgres and is audited under the actor its token names (a header
//! could name anyone). It is served on its own listener, never on the public port, and a
//! client that keeps presenting wrong tokens is locked out for a while.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{ConnectInfo, Path, Query, Request, State, rejection::QueryRejection},
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use common::{ApiJson, ConfigError, FieldError, Problem, Secret, config, problem::ProblemType};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::{
    clock::Clock,
    flags::{
        Flags,
        snapshot::FlagRecord,
        store::{Actor, AuditEntry, Change},
    },
    group::Group,
};

/// The admin bearer tokens, each with the name of who holds it.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<(String, Secret)>);

impl Tokens {
    /// No token: every admin call is refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// Tokens from `(actor, token)` pairs.
    pub fn new<A: Into<String>, T: Into<String>>(pairs: impl IntoIterator<Item = (A, T)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(actor, token)| (actor.into(), Secret::new(token)))
                .collect(),
        )
    }

    /// `ADMIN_TOKEN` (actor `admin`) and `ADMIN_TOKENS` (`actor:token,…`). Both unset, the
    /// admin API stays off. Outside development every token must pass `config::secret`'s
    /// rules (16 characters at least, no public development value).
    pub fn from_env(profile: config::Profile) -> Result<Self, ConfigError> {
        let mut tokens = Vec::new();
        if std::env::var_os("ADMIN_TOKEN").is_some() {
            tokens.push((
                "admin".to_owned(),
                config::token_list(&config::process_env, "ADMIN_TOKEN", profile, "")?,
            ));
        }
        if let Some(list) = std::env::var_os("ADMIN_TOKENS") {
            let list = list.to_string_lossy().into_owned();
            for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (actor, token) = entry
                    .split_once(':')
                    .ok_or_else(|| ConfigError::new("ADMIN_TOKENS", "each entry is actor:token"))?;
                let actor = actor.trim();
                if !is_actor_name(actor) {
                    return Err(ConfigError::new(
                        "ADMIN_TOKENS",
                        format!("{actor:?} is not an actor name (1–64 of A-Z a-z 0-9 . _ @ -)"),
                    ));
                }
                tokens.push((actor.to_owned(), token_secret(profile, token.trim())?));
            }
        }
        for (i, (_, token)) in tokens.iter().enumerate() {
            if tokens[..i]
                .iter()
                .any(|(_, t)| t.expose() == token.expose())
            {
                return Err(ConfigError::new(
                    "ADMIN_TOKENS",
                    "two actors share a token: the audit log could not tell them apart",
                ));
            }
        }
        Ok(Self(tokens))
    }

    /// Whether no token is set (the admin API refuses everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Who holds `presented`, if anyone. Every token is compared, in constant time, whatever
    /// matches: the time taken says nothing about which token, or how much of one, was right.
    pub fn actor(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (actor, token) in &self.0 {
            if common::auth::token_matches(presented, token) {
                found = Some(actor.as_str());
            }
        }
        found
    }
}

fn is_actor_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
}

fn token_secret(profile: config::Profile, token: &str) -> Result<Secret, ConfigError> {
    if token.is_empty() {
        return Err(ConfigError::new(
            "ADMIN_TOKENS",
            "an entry's token is empty",
        ));
    }
    if !profile.is_development() {
        if config::DEVELOPMENT_SECRETS.contains(&token) {
            return Err(ConfigError::new(
                "ADMIN_TOKENS",
                "holds a public development value; set secrets of your own",
            ));
        }
        if token.len() < config::MIN_SECRET_LEN {
            return Err(ConfigError::new(
                "ADMIN_TOKENS",
                format!(
                    "holds a token shorter than {} characters",
                    config::MIN_SECRET_LEN
                ),
            ));
        }
    }
    Ok(Secret::new(token))
}

/// Who made an admin call: the actor its token names.
#[derive(Debug, Clone)]
pub struct AdminActor(pub String);

/// The admin API's door: the tokens, and the clients locked out for presenting wrong ones.
pub struct Door {
    tokens: Tokens,
    max_failures: u32,
    lockout: Duration,
    clock: Arc<dyn Clock>,
    /// Per client address: wrong tokens since the first of them, and when that was.
    failures: Mutex<HashMap<IpAddr, (u32, Duration)>>,
}

/// Clients remembered at most; past it, those whose failures are stale are forgotten.
const MAX_REMEMBERED: usize = 10_000;

impl Door {
    /// A door for `tokens`: `max_failures` wrong tokens within `lockout` lock the client out
    /// for `lockout`.
    pub fn new(
        tokens: Tokens,
        max_failures: u32,
        lockout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            tokens,
            max_failures,
            lockout,
            clock,
            failures: Mutex::default(),
        }
    }

    /// When `client`'s lockout ends, if it is locked out now.
    fn locked(&self, client: IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let &(count, since) = failures.get(&client)?;
        let until = since + self.lockout;
        (count >= self.max_failures && now < until).then(|| until - now)
    }

    /// Counts a wrong token from `client`.
    fn failed(&self, client: IpAddr) {
        let now = self.clock.now();
        let lockout = self.lockout;
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_REMEMBERED {
            failures.retain(|_, (_, since)| now < *since + lockout);
        }
        let entry = failures.entry(client).or_insert((0, now));
        if now >= entry.1 + lockout {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 == self.max_failures {
            // The lockout runs from the failure that caused it.
            entry.1 = now;
            metrics::counter!("gateway_admin_lockouts_total").increment(1);
            tracing::warn!(%client, "admin API: too many wrong tokens; client locked out");
        }
    }
}

/// Middleware: a locked-out client is a 429; no token a 401; a wrong one a 403 (and counts
/// towards a lockout); a right one passes with its actor.
async fn authorize(State(door): State<Arc<Door>>, mut request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if let Some(left) = door.locked(client) {
        let seconds = left.as_secs().max(1);
        return Problem::new(ProblemType::LockedOut)
            .detail(format!("This client is locked out; retry in {seconds} s"))
            .header(header::RETRY_AFTER, HeaderValue::from(seconds))
            .into_response();
    }
    let Some(presented) = common::auth::bearer(request.headers()) else {
        return Problem::unauthorized().into_response();
    };
    let Some(actor) = door.tokens.actor(presented).map(str::to_owned) else {
        door.failed(client);
        return Problem::forbidden().into_response();
    };
    request.extensions_mut().insert(AdminActor(actor));
    next.run(request).await
}

/// The OpenAPI description of the admin API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gateway admin API",
        description = "Route flags of the strangler-fig gateway. Every call needs \
                       `Authorization: Bearer <token>`; the token names who acts."
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

/// The admin routes behind `door`. Serve them with the client's `ConnectInfo`: lockouts are
/// per client address.
pub fn router(flags: Arc<Flags>, door: Arc<Door>) -> Router {
    Router::new()
        .route("/admin/flags", get(list))
        .route("/admin/flags/{name}", get(get_one).put(change))
        .route("/admin/flags/{name}/rollback", post(roll_back))
        .route("/admin/flags/{name}/audit", get(audit))
        .with_state(flags)
        .route_layer(middleware::from_fn_with_state(door, authorize))
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
    #[schema(minimum = 0, maximum = 100)]
    pub rollout_percent: Option<i64>,
    /// Why, for the audit log: at most 500 characters once surrounding whitespace is
    /// trimmed (a limit a JSON schema cannot state, so it is not declared as `maxLength`).
    pub reason: Option<String>,
}

/// The optional body of a rollback.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Why, for the audit log: at most 500 characters once surrounding whitespace is
    /// trimmed (a limit a JSON schema cannot state, so it is not declared as `maxLength`).
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
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries at most (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
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
        (status = 429, description = "This client presented too many wrong tokens; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
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
    params(("name" = String, Path, description = "cart, orders or payments; any other name is no flag (404)", pattern = "^(cart|orders|payments)$")),
    responses(
        (status = 200, description = "The flag", body = FlagRecord),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client presented too many wrong tokens; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
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
    params(("name" = String, Path, description = "cart, orders or payments; any other name is no flag (404)", pattern = "^(cart|orders|payments)$")),
    request_body = FlagUpdate,
    responses(
        (status = 200, description = "The flag as changed", body = FlagRecord),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid change: a percent outside 0–100, neither `enabled` nor `rollout_percent`, a reason over 500 characters, or a field of the wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client presented too many wrong tokens; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flag store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip(flags, body))]
pub async fn change(
    State(flags): State<Arc<Flags>>,
    Path(name): Path<String>,
    Extension(AdminActor(actor)): Extension<AdminActor>,
    ApiJson(body): ApiJson<FlagUpdate>,
) -> Result<Json<FlagRecord>, Problem> {
    let group = group(&name)?;
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
    params(("name" = String, Path, description = "cart, orders or payments; any other name is no flag (404)", pattern = "^(cart|orders|payments)$")),
    request_body(content = Option<RollbackRequest>, description = "Optional reason; any content type is read as JSON"),
    responses(
        (status = 200, description = "The flag, rolled back", body = FlagRecord),
        (status = 400, description = "The body is not JSON, or not a rollback request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A reason over 500 characters", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client presented too many wrong tokens; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flag store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip(flags, body))]
pub async fn roll_back(
    State(flags): State<Arc<Flags>>,
    Path(name): Path<String>,
    Extension(AdminActor(actor)): Extension<AdminActor>,
    body: Bytes,
) -> Result<Json<FlagRecord>, Problem> {
    let group = group(&name)?;
    let request: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::new(ProblemType::MalformedJson).detail(e.to_string()))?
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
    params(("name" = String, Path, description = "cart, orders or payments; any other name is no flag (404)", pattern = "^(cart|orders|payments)$"), AuditQuery),
    responses(
        (status = 200, description = "The audit log", body = AuditLog),
        (status = 404, description = "No such flag", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`limit` is not a number from 1 to 1000", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client presented too many wrong tokens; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The flag store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
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

fn text(field: &str, value: Option<String>) -> Result<Option<String>, Problem> {
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) if v.chars().count() > MAX_TEXT => Err(Problem::invalid_field(
            field,
            format!("at most {MAX_TEXT} characters"),
        )),
        other => Ok(other),
    }
}
