//! The flags in Postgres (`flags.flags`), the source of truth, and their append-only audit
//! log (`flags.audit`). Every change locks the row, bumps its version and writes the audit
//! entry in one transaction, so the log and the flags can never disagree.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction, types::Json};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::snapshot::FlagRecord;
use crate::group::Group;

/// A change to a flag: absent fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// New `enabled`, if any.
    pub enabled: Option<bool>,
    /// New rollout (already checked to be 0–100), if any.
    pub rollout_percent: Option<u8>,
}

/// Who changed a flag, how and why: one audit entry's context.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// Who (`X-Actor`, `admin`, `auto-rollback`, `startup`).
    pub name: &'a str,
    /// What kind of change (`update`, `rollback`, `auto-rollback`, `initial-rollout`).
    pub action: &'a str,
    /// Why, in the actor's words.
    pub reason: Option<&'a str>,
}

/// One entry of a flag's audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the log.
    pub id: i64,
    /// The flag's name.
    pub flag: String,
    /// Who made the change.
    pub actor: String,
    /// What kind of change it was.
    pub action: String,
    /// The flag before (`enabled`, `rollout_percent`).
    #[schema(value_type = Object)]
    pub old: Option<Value>,
    /// The flag after.
    #[schema(value_type = Object)]
    pub new: Value,
    /// Why.
    pub reason: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

type FlagRow = (String, bool, i16, i64, OffsetDateTime);

fn record((name, enabled, rollout, version, updated_at): FlagRow) -> FlagRecord {
    FlagRecord {
        name,
        enabled,
        rollout_percent: u8::try_from(rollout.clamp(0, 100)).unwrap_or(0),
        version,
        updated_at,
    }
}

/// Every flag.
pub async fn load_all(pool: &PgPool) -> Result<Vec<FlagRecord>, sqlx::Error> {
    let rows: Vec<FlagRow> = sqlx::query_as(
        "SELECT name, enabled, rollout_percent, version, updated_at FROM flags.flags",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(record).collect())
}

/// Applies `change` to `group`'s flag and audits it; `None` when the flag row is missing.
pub async fn change(
    pool: &PgPool,
    group: Group,
    change: Change,
    actor: Actor<'_>,
) -> Result<Option<FlagRecord>, sqlx::Error> {
    let mut tx = common::db::begin(pool).await?;
    let Some(old) = lock(&mut tx, group).await? else {
        return Ok(None);
    };
    let new = write(&mut tx, &old, change, actor).await?;
    tx.commit().await?;
    Ok(Some(new))
}

/// Sets `group`'s rollout to 0 if it is above 0, and audits it; `None` when it already is 0.
pub async fn roll_back_if_ramped(
    pool: &PgPool,
    group: Group,
    actor: Actor<'_>,
) -> Result<Option<FlagRecord>, sqlx::Error> {
    let mut tx = common::db::begin(pool).await?;
    let Some(old) = lock(&mut tx, group).await? else {
        return Ok(None);
    };
    if old.rollout_percent == 0 {
        return Ok(None);
    }
    let change = Change {
        enabled: None,
        rollout_percent: Some(0),
    };
    let new = write(&mut tx, &old, change, actor).await?;
    tx.commit().await?;
    Ok(Some(new))
}

/// Sets every flag nobody has changed since the migration seeded it (version 0) to
/// `rollout_percent`; answers the flags it changed.
pub async fn initial_rollout(
    pool: &PgPool,
    rollout_percent: u8,
) -> Result<Vec<FlagRecord>, sqlx::Error> {
    let mut changed = Vec::new();
    for group in Group::ALL {
        let mut tx = common::db::begin(pool).await?;
        let Some(old) = lock(&mut tx, group).await? else {
            continue;
        };
        if old.version != 0 {
            continue;
        }
        let change = Change {
            enabled: None,
            rollout_percent: Some(rollout_percent),
        };
        let actor = Actor {
            name: "startup",
            action: "initial-rollout",
            reason: Some("GATEWAY_INITIAL_ROLLOUT"),
        };
        changed.push(write(&mut tx, &old, change, actor).await?);
        tx.commit().await?;
    }
    Ok(changed)
}

/// `group`'s audit log, newest first.
pub async fn audit(
    pool: &PgPool,
    group: Group,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    type AuditRow = (
        i64,
        String,
        String,
        String,
        Option<Json<Value>>,
        Json<Value>,
        Option<String>,
        OffsetDateTime,
    );
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT id, flag, actor, action, old, new, reason, at FROM flags.audit
         WHERE flag = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(group.name())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, flag, actor, action, old, new, reason, at)| AuditEntry {
                id,
                flag,
                actor,
                action,
                old: old.map(|j| j.0),
                new: new.0,
                reason,
                at,
            },
        )
        .collect())
}

async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    group: Group,
) -> Result<Option<FlagRecord>, sqlx::Error> {
    let row: Option<FlagRow> = sqlx::query_as(
        "SELECT name, enabled, rollout_percent, version, updated_at FROM flags.flags
         WHERE name = $1 FOR UPDATE",
    )
    .bind(group.name())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(record))
}

async fn write(
    tx: &mut Transaction<'_, Postgres>,
    old: &FlagRecord,
    change: Change,
    actor: Actor<'_>,
) -> Result<FlagRecord, sqlx::Error> {
    let row: FlagRow = sqlx::query_as(
        "UPDATE flags.flags
         SET enabled = COALESCE($2, enabled), rollout_percent = COALESCE($3, rollout_percent),
             version = version + 1, updated_at = now()
         WHERE name = $1
         RETURNING name, enabled, rollout_percent, version, updated_at",
    )
    .bind(&old.name)
    .bind(change.enabled)
    .bind(change.rollout_percent.map(i16::from))
    .fetch_one(&mut **tx)
    .await?;
    let new = record(row);
    let state =
        |r: &FlagRecord| json!({"enabled": r.enabled, "rollout_percent": r.rollout_percent});
    sqlx::query(
        "INSERT INTO flags.audit (flag, actor, action, old, new, reason)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&new.name)
    .bind(actor.name)
    .bind(actor.action)
    .bind(Json(state(old)))
    .bind(Json(state(&new)))
    .bind(actor.reason)
    .execute(&mut **tx)
    .await?;
    Ok(new)
}
