//! The chaos run's own Postgres and Redis: private, throw-away, and durable the way production
//! is (Postgres with fsync on, Redis with `appendfsync always`), so a kill tests recovery
//! rather than a benchmark setting. The nemesis kills and restarts them on the same ports.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::stack::{
    INSTALL_HINT, as_postgres_user, create_database, find_postgres_binary, is_root,
    postgres_answers, redis_answers, run, wait_until,
};

/// Private Postgres and Redis under one directory, removed when dropped.
pub struct Stores {
    /// Postgres, with the `checkout` database.
    pub database_url: String,
    /// Redis.
    pub redis_url: String,
    dir: PathBuf,
    as_root: bool,
    pg_port: u16,
    redis_port: u16,
    postgres: Option<Child>,
    redis: Option<Child>,
}

impl Stores {
    /// Initialises and starts both under `dir`.
    pub async fn start(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("pg")).context("creating the stores' directory")?;
        let as_root = is_root();
        if as_root {
            // Postgres refuses to run as root: its files belong to the `postgres` user.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let mut init = as_postgres_user(&find_postgres_binary("initdb")?, as_root);
        init.arg("-D")
            .arg(dir.join("pg"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        run(init.stdout(Stdio::null())).context("initdb")?;
        let pg_port = crate::stack::free_port()?;
        let redis_port = crate::stack::free_port()?;
        let mut stores = Self {
            database_url: format!("postgres://postgres@127.0.0.1:{pg_port}/checkout"),
            redis_url: format!("redis://127.0.0.1:{redis_port}"),
            dir,
            as_root,
            pg_port,
            redis_port,
            postgres: None,
            redis: None,
        };
        stores.start_postgres().await?;
        create_database(&stores.database_url).await?;
        stores.start_redis().await?;
        Ok(stores)
    }

    /// Starts Postgres (again) on its port; resolves once it answers.
    pub async fn start_postgres(&mut self) -> anyhow::Result<()> {
        let data = self.dir.join("pg");
        let mut server = as_postgres_user(&find_postgres_binary("postgres")?, self.as_root);
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.pg_port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&data)
            // fsync, synchronous_commit and full_page_writes stay at their durable defaults.
            .args(["-c", "max_connections=300"])
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.join("postgres.log"))?);
        self.postgres = Some(server.spawn().context("starting postgres")?);
        let url = self.database_url.clone();
        wait_until("Postgres", || postgres_answers(&url)).await
    }

    /// `pg_ctl stop -m immediate`: the postmaster and every backend quit at once, without a
    /// checkpoint, as in a power cut; the next start replays the WAL.
    pub fn stop_postgres_immediately(&mut self) -> anyhow::Result<()> {
        let mut stop = as_postgres_user(&find_postgres_binary("pg_ctl")?, self.as_root);
        stop.args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("pg"));
        run(stop.stdout(Stdio::null()))?;
        if let Some(mut child) = self.postgres.take() {
            wait_exit(&mut child);
        }
        Ok(())
    }

    /// Starts Redis (again) on its port with an append-only file synced on every write.
    pub async fn start_redis(&mut self) -> anyhow::Result<()> {
        let server = Command::new("redis-server")
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(log_file(&self.dir.join("redis.log"))?)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting redis-server: {e}; {INSTALL_HINT}"))?;
        self.redis = Some(server);
        let url = self.redis_url.clone();
        wait_until("Redis", || redis_answers(&url)).await
    }

    /// kill -9 of Redis.
    pub fn kill_redis(&mut self) {
        if let Some(mut child) = self.redis.take() {
            let _ = child.kill();
            wait_exit(&mut child);
        }
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        self.kill_redis();
        if let Some(mut child) = self.postgres.take() {
            // SIGTERM is Postgres's smart shutdown; fast enough once every client is gone.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_exit(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A log file appended to across restarts.
fn log_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}
