//! The nemesis: a fault schedule drawn from the run's seed and printed before the load, then
//! played against the running platform. Two lanes run side by side: one kills processes and
//! stores (one at a time, so each recovery is its own), one opens windows of stripe-sim
//! misbehaviour. Every fault kind comes at least once, however short the run.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{procs::Procs, rng::Rng, stores::Stores};

/// What the nemesis does.
#[derive(Debug, Clone)]
pub enum Fault {
    /// kill -9 of the process with this label, restarted after the hold.
    Kill(&'static str),
    /// kill -9 of Redis, restarted after the hold.
    RedisKill,
    /// `pg_ctl stop -m immediate`, restarted after the hold.
    PostgresStop,
    /// A stripe-sim control set for the hold, then put back.
    Sim(&'static str, Value, Value),
}

impl Fault {
    /// How the timeline names it.
    pub fn name(&self) -> String {
        match self {
            Self::Kill(label) => format!("kill -9 {label}"),
            Self::RedisKill => "kill -9 redis".to_owned(),
            Self::PostgresStop => "postgres stop -m immediate".to_owned(),
            Self::Sim(control, value, _) => format!("stripe-sim {control}={value}"),
        }
    }

    /// Whether it takes part of the platform down (a 5xx is expected while it lasts).
    pub fn is_outage(&self) -> bool {
        !matches!(self, Self::Sim(..))
    }
}

/// A fault in the schedule.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Seconds after the load starts.
    pub at: f64,
    /// For how long (the downtime, or the control's window).
    pub hold: f64,
    /// What.
    pub fault: Fault,
}

/// A fault as it happened.
#[derive(Debug, Clone)]
pub struct Happened {
    /// What.
    pub name: String,
    /// Seconds since the run's clock started.
    pub start: f64,
    /// When it was healed and everything answered again.
    pub end: f64,
    /// Whether it was an outage.
    pub outage: bool,
    /// How the healing went, when not plainly.
    pub note: Option<String>,
}

fn outages() -> Vec<Fault> {
    vec![
        Fault::Kill("orders-worker-1"),
        Fault::Kill("orders-worker-2"),
        Fault::Kill("orders-api"),
        Fault::Kill("payments"),
        Fault::RedisKill,
        Fault::PostgresStop,
    ]
}

fn sim_windows() -> Vec<Fault> {
    vec![
        Fault::Sim("failure_share", json!(0.25), json!(0.0)),
        Fault::Sim("lost_response_share", json!(0.25), json!(0.0)),
        Fault::Sim("webhook_copies", json!(2), json!(1)),
        Fault::Sim("webhook_reorder_window", json!(4), json!(0)),
        Fault::Sim("webhook_delay_ms", json!(1500), json!(0)),
        Fault::Sim("webhook_drop_share", json!(0.1), json!(0.0)),
    ]
}

/// The schedule for a load of `load` seconds: both lanes, each kind at least once.
pub fn plan(rng: &mut Rng, load: f64) -> (Vec<Planned>, Vec<Planned>) {
    let lane = |rng: &mut Rng, kinds: Vec<Fault>, hold: &dyn Fn(&mut Rng, f64) -> f64| {
        // Slots of at least 10 s, so each fault heals before the next.
        let slots = kinds.len().max((load / 10.0) as usize);
        let slot = (load - 2.0) / slots as f64;
        let mut order = Vec::new();
        while order.len() < slots {
            let mut round = kinds.clone();
            rng.shuffle(&mut round);
            order.extend(round);
        }
        order
            .into_iter()
            .take(slots)
            .enumerate()
            .map(|(i, fault)| Planned {
                at: 2.0 + i as f64 * slot + rng.unit() * slot * 0.3,
                hold: hold(rng, slot),
                fault,
            })
            .collect::<Vec<_>>()
    };
    let outages = lane(rng, outages(), &|rng, _| 1.0 + rng.unit() * 2.0);
    let sims = lane(rng, sim_windows(), &|rng, slot| {
        slot * (0.4 + rng.unit() * 0.3)
    });
    (outages, sims)
}

/// Prints the schedule.
pub fn print(lanes: &(Vec<Planned>, Vec<Planned>)) {
    let mut all: Vec<&Planned> = lanes.0.iter().chain(&lanes.1).collect();
    all.sort_by(|a, b| a.at.total_cmp(&b.at));
    println!("fault schedule (seconds after the load starts):");
    for p in all {
        println!("  {:>6.1}  for {:>4.1} s  {}", p.at, p.hold, p.fault.name());
    }
}

/// What the nemesis acts on.
#[derive(Clone)]
pub struct Target {
    /// The platform's processes.
    pub procs: Arc<Mutex<Procs>>,
    /// Postgres and Redis.
    pub stores: Arc<tokio::sync::Mutex<Stores>>,
    /// stripe-sim's `host:port`.
    pub sim: String,
    /// The run's clock.
    pub started: Instant,
    /// Where what happened is written down.
    pub timeline: Arc<Mutex<Vec<Happened>>>,
}

impl Target {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Plays one lane; `load_start` is the run-clock second the load began.
    pub async fn play(self, lane: Vec<Planned>, load_start: f64) {
        for planned in lane {
            let due = self.started + Duration::from_secs_f64(load_start + planned.at);
            tokio::time::sleep_until(due.into()).await;
            let start = self.now();
            let note = self.apply(&planned.fault, planned.hold).await.err();
            let happened = Happened {
                name: planned.fault.name(),
                start,
                end: self.now(),
                outage: planned.fault.is_outage(),
                note: note.map(|e| format!("{e:#}")),
            };
            self.timeline.lock().expect("timeline").push(happened);
        }
    }

    async fn apply(&self, fault: &Fault, hold: f64) -> anyhow::Result<()> {
        let hold = Duration::from_secs_f64(hold);
        match fault {
            Fault::Kill(label) => {
                self.procs.lock().expect("procs").get(label).kill9();
                tokio::time::sleep(hold).await;
                self.procs.lock().expect("procs").get(label).spawn()?;
                self.ready(label).await
            }
            Fault::RedisKill => {
                self.stores.lock().await.kill_redis();
                tokio::time::sleep(hold).await;
                self.stores.lock().await.start_redis().await?;
                self.all_ready().await
            }
            Fault::PostgresStop => {
                self.stores.lock().await.stop_postgres_immediately()?;
                tokio::time::sleep(hold).await;
                self.stores.lock().await.start_postgres().await?;
                self.all_ready().await
            }
            Fault::Sim(control, on, off) => {
                self.sim_control(json!({ *control: on })).await?;
                tokio::time::sleep(hold).await;
                self.sim_control(json!({ *control: off })).await
            }
        }
    }

    async fn ready(&self, label: &str) -> anyhow::Result<()> {
        let proc = {
            let procs = self.procs.lock().expect("procs");
            let p = procs.all.iter().find(|p| p.label == label).expect("known");
            (p.label.clone(), p.url.clone())
        };
        super::platform::wait_ready(&proc.0, &proc.1, Duration::from_secs(60)).await
    }

    async fn all_ready(&self) -> anyhow::Result<()> {
        let procs: Vec<(String, String)> = {
            let procs = self.procs.lock().expect("procs");
            procs
                .all
                .iter()
                .map(|p| (p.label.clone(), p.url.clone()))
                .collect()
        };
        for (label, url) in procs {
            super::platform::wait_ready(&label, &url, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Sets stripe-sim controls, retrying until it answers.
    pub async fn sim_control(&self, body: Value) -> anyhow::Result<()> {
        for _ in 0..20 {
            let answer = super::http::send(
                &self.sim,
                hyper::Method::POST,
                "/_sim/controls",
                &[],
                super::http::Body::Json(body.clone()),
            )
            .await;
            if answer.is_some_and(|a| a.status == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!("stripe-sim refused controls {body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(lanes: &(Vec<Planned>, Vec<Planned>)) -> Vec<String> {
        lanes
            .0
            .iter()
            .chain(&lanes.1)
            .map(|p| p.fault.name())
            .collect()
    }

    #[test]
    fn a_short_run_schedules_every_fault_kind_within_the_load() {
        let lanes = plan(&mut Rng::new(1), 45.0);
        let scheduled = names(&lanes);
        for kind in outages().into_iter().chain(sim_windows()) {
            assert!(
                scheduled.contains(&kind.name()),
                "{} is not scheduled in {scheduled:?}",
                kind.name()
            );
        }
        for p in lanes.0.iter().chain(&lanes.1) {
            assert!(
                p.at >= 0.0 && p.at + p.hold <= 45.0,
                "{p:?} leaves the load"
            );
        }
    }

    #[test]
    fn outages_never_overlap_one_another() {
        let (outages, _) = plan(&mut Rng::new(9), 600.0);
        for pair in outages.windows(2) {
            assert!(pair[0].at + pair[0].hold < pair[1].at, "{pair:?} overlap");
        }
        assert!(outages.len() >= 60);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = plan(&mut Rng::new(42), 60.0);
        let b = plan(&mut Rng::new(42), 60.0);
        let c = plan(&mut Rng::new(43), 60.0);
        let at = |l: &(Vec<Planned>, Vec<Planned>)| -> Vec<String> {
            l.0.iter()
                .chain(&l.1)
                .map(|p| format!("{:.3} {}", p.at, p.fault.name()))
                .collect()
        };
        assert_eq!(at(&a), at(&b));
        assert_ne!(at(&a), at(&c));
    }
}
