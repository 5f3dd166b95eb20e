//! The immutable picture of every flag that a process routes by. A routing decision reads
//! one `Snapshot` and nothing else; changes build a new snapshot and swap it in whole.
//! Records carry a version that grows with every change, so merging keeps the newest of
//! each flag whatever order records arrive in (pub/sub, resync, a local write).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::group::Group;

/// One flag's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// Off sends the whole group to legacy (ids of the new service excepted).
    pub enabled: bool,
    /// Share of keys (0–100) whose new carts and orders the new service creates.
    pub rollout_percent: u8,
    /// Number of changes so far; 0 is the seeded row, -1 a snapshot never loaded.
    pub version: i64,
    /// When the flag last changed.
    pub updated_at: OffsetDateTime,
}

impl Flag {
    /// Whether auto-rollback can still lower this flag.
    pub fn is_ramped(&self) -> bool {
        self.rollout_percent > 0
    }
}

/// A flag as stored, published and answered by the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlagRecord {
    /// The flag's name: `cart`, `orders` or `payments`.
    pub name: String,
    /// Off sends the whole group to legacy (ids of the new service excepted).
    pub enabled: bool,
    /// Share of keys (0–100) routed to the new service.
    pub rollout_percent: u8,
    /// Grows by one with every change.
    pub version: i64,
    /// When the flag last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl FlagRecord {
    /// The record of `group`'s flag.
    pub fn new(group: Group, flag: Flag) -> Self {
        Self {
            name: group.name().to_owned(),
            enabled: flag.enabled,
            rollout_percent: flag.rollout_percent,
            version: flag.version,
            updated_at: flag.updated_at,
        }
    }

    fn flag(&self) -> Flag {
        Flag {
            enabled: self.enabled,
            rollout_percent: self.rollout_percent.min(100),
            version: self.version,
            updated_at: self.updated_at,
        }
    }
}

/// Every group's flag at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    flags: [Flag; 3],
}

impl Snapshot {
    /// Every group enabled at `rollout_percent`, version -1 (older than any stored row).
    pub fn uniform(enabled: bool, rollout_percent: u8) -> Self {
        let flag = Flag {
            enabled,
            rollout_percent: rollout_percent.min(100),
            version: -1,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        Self { flags: [flag; 3] }
    }

    /// `group`'s flag.
    pub fn get(&self, group: Group) -> &Flag {
        &self.flags[group.index()]
    }

    /// This snapshot with `group`'s flag replaced.
    pub fn with(&self, group: Group, flag: Flag) -> Self {
        let mut next = self.clone();
        next.flags[group.index()] = flag;
        next
    }

    /// Every flag as a record, in group order.
    pub fn records(&self) -> Vec<FlagRecord> {
        Group::ALL
            .into_iter()
            .map(|g| FlagRecord::new(g, *self.get(g)))
            .collect()
    }

    /// This snapshot with every record newer than what it holds; `None` when no record is.
    /// Answers the groups that changed too.
    pub fn merge(&self, records: &[FlagRecord]) -> Option<(Self, Vec<Group>)> {
        let mut next = self.clone();
        let mut changed = Vec::new();
        for record in records {
            let Some(group) = Group::parse(&record.name) else {
                continue;
            };
            if record.version > next.get(group).version {
                next.flags[group.index()] = record.flag();
                if !changed.contains(&group) {
                    changed.push(group);
                }
            }
        }
        (!changed.is_empty()).then_some((next, changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, rollout: u8, version: i64) -> FlagRecord {
        FlagRecord {
            name: name.to_owned(),
            enabled: true,
            rollout_percent: rollout,
            version,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn newer_records_replace_older_ones_and_older_ones_are_ignored() {
        let start = Snapshot::uniform(true, 0);
        let (next, changed) = start
            .merge(&[record("cart", 50, 3), record("orders", 10, 1)])
            .unwrap();
        assert_eq!(changed, vec![Group::Cart, Group::Orders]);
        assert_eq!(next.get(Group::Cart).rollout_percent, 50);
        assert!(next.merge(&[record("cart", 25, 2)]).is_none());
        assert!(next.merge(&[record("cart", 25, 3)]).is_none());
        let (last, _) = next.merge(&[record("cart", 25, 4)]).unwrap();
        assert_eq!(last.get(Group::Cart).rollout_percent, 25);
        assert_eq!(last.get(Group::Payments), start.get(Group::Payments));
    }

    #[test]
    fn unknown_flags_are_ignored() {
        assert!(
            Snapshot::uniform(true, 0)
                .merge(&[record("search", 100, 9)])
                .is_none()
        );
    }
}
