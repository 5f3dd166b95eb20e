//! Postgres and Redis for local runs. A configured or default server is used when it
//! answers; otherwise a throw-away instance is started from the system's binaries under
//! the target directory's `stack/`, on a free port, and stopped when the `Stack` is dropped.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, PgConnection};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/checkout";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// How to get the stores' binaries, for error messages.
pub(crate) const INSTALL_HINT: &str =
    "install it with: sudo apt-get install -y postgresql redis-server";

/// Running stores and the processes this run started for them.
pub struct Stack {
    /// Where Postgres answers, with the `checkout` database created.
    pub database_url: String,
    /// Where Redis answers.
    pub redis_url: String,
    children: Vec<Child>,
    dir: Option<PathBuf>,
}

impl Stack {
    /// Finds or starts Postgres and Redis.
    pub async fn ensure() -> anyhow::Result<Self> {
        let mut stack = Self {
            database_url: String::new(),
            redis_url: String::new(),
            children: Vec::new(),
            dir: None,
        };

        let database_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        stack.database_url = if postgres_answers(&database_url).await {
            database_url
        } else {
            eprintln!(
                "xtask: no Postgres at {}; starting a throw-away one",
                common::db::redact_url(&database_url)
            );
            stack.start_postgres().await?
        };
        create_database(&stack.database_url).await?;

        let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        stack.redis_url = if redis_answers(&redis_url).await {
            redis_url
        } else {
            eprintln!("xtask: no Redis at {redis_url}; starting a throw-away one");
            stack.start_redis().await?
        };
        Ok(stack)
    }

    fn dir(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        let dir = crate::target_dir::scratch("stack")?.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.dir = Some(dir.clone());
        Ok(dir)
    }

    async fn start_postgres(&mut self) -> anyhow::Result<String> {
        let initdb = find_postgres_binary("initdb")?;
        let postgres = find_postgres_binary("postgres")?;
        let data = self.dir()?.join("pg");
        std::fs::create_dir_all(&data)?;
        let as_root = is_root();
        if as_root {
            // Postgres refuses to run as root: run it as the `postgres` system user.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir()?))?;
        }
        let mut init = as_postgres_user(&initdb, as_root);
        init.args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(init.stdout(Stdio::null())).context("initdb")?;

        let port = free_port()?;
        let mut server = as_postgres_user(&postgres, as_root);
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&data)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir()?.join("postgres.log"))?);
        self.children
            .push(server.spawn().context("starting postgres")?);

        let url = format!("postgres://postgres@127.0.0.1:{port}/checkout");
        wait_until("Postgres", || postgres_answers(&url)).await?;
        Ok(url)
    }

    async fn start_redis(&mut self) -> anyhow::Result<String> {
        let port = free_port()?;
        let dir = self.dir()?;
        let server = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&dir)
            .stdout(std::fs::File::create(dir.join("redis.log"))?)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting redis-server: {e}; {INSTALL_HINT}"))?;
        self.children.push(server);
        let url = format!("redis://127.0.0.1:{port}");
        wait_until("Redis", || redis_answers(&url)).await?;
        Ok(url)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SIGTERM lets Postgres shut down cleanly; a kill follows if it does not.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether the Postgres server of `url` accepts a connection.
pub(crate) async fn postgres_answers(url: &str) -> bool {
    // Connect to the server's maintenance database: the target database may not exist yet.
    let admin = with_database(url, "postgres");
    matches!(
        tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(&admin)).await,
        Ok(Ok(_))
    )
}

/// Creates the database `url` names unless it exists.
pub(crate) async fn create_database(url: &str) -> anyhow::Result<()> {
    let name = url
        .rsplit('/')
        .next()
        .and_then(|n| n.split('?').next())
        .unwrap_or("checkout")
        .to_owned();
    let mut admin = PgConnection::connect(&with_database(url, "postgres"))
        .await
        .context("connecting to Postgres")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "")
        )))
        .execute(&mut admin)
        .await?;
    }
    Ok(())
}

/// `url` pointing at another database on the same server.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let server = if server.ends_with('/') || server.ends_with(':') {
        base
    } else {
        server
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

/// Whether Redis at `url` answers PING.
pub(crate) async fn redis_answers(url: &str) -> bool {
    let Some(addr) = url
        .strip_prefix("redis://")
        .map(|rest| rest.rsplit('@').next().unwrap_or(rest))
    else {
        return false;
    };
    let addr = addr.split('/').next().unwrap_or(addr).to_owned();
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 16];
        let n = stream.read(&mut reply).await?;
        Ok::<_, std::io::Error>(
            reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(true))
    )
}

/// Polls `probe` until it holds, for at most 30 s.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if probe().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} did not start within 30 s")
}

/// A Postgres server binary (`initdb`, `postgres`, `pg_ctl`) from PATH or Debian's layout.
pub(crate) fn find_postgres_binary(name: &str) -> anyhow::Result<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    // Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<version>/bin.
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .collect();
    debian.sort();
    debian.reverse();
    in_path
        .chain(debian)
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("no `{name}` binary found; {INSTALL_HINT}"))
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A command running `binary`, as the `postgres` user when we are root.
pub(crate) fn as_postgres_user(binary: &Path, as_root: bool) -> Command {
    if as_root {
        // setpriv execs in place, so the child we hold is the server itself.
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(binary);
        command
    } else {
        Command::new(binary)
    }
}

/// Runs `command`; an error unless it succeeds.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
