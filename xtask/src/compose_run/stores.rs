//! Postgres and Redis as their official images run them, from the system's binaries: the
//! Postgres image's first start (superuser password, password logins from the network,
//! `POSTGRES_DB` created before anyone connects) and Redis reachable from the network.
//! Their data lives in the run's scratch directory and goes with it.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use super::{net::Network, plan::Service};
use crate::stack;

/// The ports of the official images.
const POSTGRES_PORT: u16 = 5432;
const REDIS_PORT: u16 = 6379;

/// The `POSTGRES_*` settings of the Postgres image, with its defaults.
struct Settings {
    user: String,
    password: String,
    database: String,
}

impl Settings {
    fn of(service: &Service) -> Self {
        let env = |key: &str| service.env.get(key).filter(|v| !v.is_empty()).cloned();
        let user = env("POSTGRES_USER").unwrap_or_else(|| "postgres".to_owned());
        Self {
            password: env("POSTGRES_PASSWORD").unwrap_or_default(),
            database: env("POSTGRES_DB").unwrap_or_else(|| user.clone()),
            user,
        }
    }
}

/// Where the compose Postgres answers from the root namespace, as its superuser.
pub fn database_url(service: &Service, address: Ipv4Addr) -> String {
    let settings = Settings::of(service);
    format!(
        "postgres://{}:{}@{address}:{POSTGRES_PORT}/{}",
        encode(&settings.user),
        encode(&settings.password),
        settings.database
    )
}

/// The data directory under `dir`, which also holds the server's socket: in the container
/// the socket directory is the container's own, here it must not be the host server's.
pub fn socket_dir(dir: &Path) -> PathBuf {
    dir.join("pgdata")
}

/// As the official image does on first start: a cluster whose superuser has
/// `POSTGRES_PASSWORD`, password logins from the network, `POSTGRES_DB` created before
/// the server accepts anyone; then the server, as the `postgres` user.
pub fn postgres(net: &Network, service: &Service, dir: &Path) -> anyhow::Result<Command> {
    let Settings {
        user,
        password,
        database,
    } = Settings::of(service);
    if password.is_empty() {
        bail!("{}: POSTGRES_PASSWORD is not set", service.name);
    }
    let data = socket_dir(dir);
    let password_file = dir.join("password");
    std::fs::write(&password_file, &password)?;
    stack::run(
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir),
    )?;
    let as_postgres = |binary: &str| -> anyhow::Result<Command> {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(stack::find_postgres_binary(binary)?);
        Ok(command)
    };
    stack::run(
        as_postgres("initdb")?
            .arg("-D")
            .arg(&data)
            .args(["-U", &user, "-E", "UTF8", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", password_file.display()))
            .stdout(Stdio::null()),
    )
    .context("initdb")?;
    std::fs::remove_file(&password_file)?;
    let mut hba = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("pg_hba.conf"))?;
    std::io::Write::write_all(&mut hba, b"host all all all scram-sha-256\n")?;
    if database != "postgres" {
        let mut single = as_postgres("postgres")?;
        single.arg("--single").arg("-D").arg(&data).arg("postgres");
        let mut child = single
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting postgres --single")?;
        let statement = format!("CREATE DATABASE \"{}\";\n", database.replace('"', ""));
        std::io::Write::write_all(
            &mut child.stdin.take().context("postgres' stdin")?,
            statement.as_bytes(),
        )?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "creating database {database} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    let mut server = net.command(&service.name, "setpriv");
    server
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(stack::find_postgres_binary("postgres")?)
        .arg("-D")
        .arg(&data)
        .args(["-p", &POSTGRES_PORT.to_string(), "-k"])
        .arg(&data)
        .args(["-c", "listen_addresses=*", "-c", "fsync=off"]);
    Ok(server)
}

/// Redis as the image runs it without a configuration file, reachable from the network.
pub fn redis(net: &Network, service: &Service, dir: &Path) -> Command {
    let mut command = net.command(&service.name, "redis-server");
    command
        .args(["--port", &REDIS_PORT.to_string(), "--bind", "0.0.0.0"])
        .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    command
}

/// `text` percent-encoded for a URL's user or password.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose_run::plan::Kind;

    #[test]
    fn the_seed_connects_as_the_image_s_superuser_to_its_database() {
        let service = |env: &[(&str, &str)]| Service {
            name: "postgres".to_owned(),
            kind: Kind::Postgres,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            depends_on: Vec::new(),
            healthcheck: None,
        };
        let address = Ipv4Addr::new(10, 1, 2, 10);
        assert_eq!(
            database_url(
                &service(&[("POSTGRES_DB", "checkout"), ("POSTGRES_PASSWORD", "p@ss w")]),
                address
            ),
            "postgres://postgres:p%40ss%20w@10.1.2.10:5432/checkout"
        );
        assert_eq!(
            database_url(
                &service(&[("POSTGRES_USER", "shop"), ("POSTGRES_PASSWORD", "pw")]),
                address
            ),
            "postgres://shop:pw@10.1.2.10:5432/shop"
        );
    }
}
