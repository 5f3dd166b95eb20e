//! A fresh database per test, cloned from a template migrated once per test binary, so
//! parallel tests never share a queue or a payment.

use std::{future::Future, sync::OnceLock};

use sqlx::{Connection as _, PgConnection, PgPool};

static TEMPLATE: OnceLock<String> = OnceLock::new();

fn server_url() -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/checkout".into());
    base.rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .expect("DATABASE_URL names a database")
}

/// Runs `f` on a thread with its own runtime (each test has its own runtime; the template
/// outlives them).
fn blocking<F: Future<Output = ()> + Send + 'static>(f: F) {
    std::thread::spawn(move || tokio::runtime::Runtime::new().unwrap().block_on(f))
        .join()
        .unwrap();
}

async fn admin_connection(server: &str) -> PgConnection {
    PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("Postgres answers at DATABASE_URL")
}

/// A fresh database for one test, copied from a migrated template made once per binary.
pub async fn url() -> String {
    let server = server_url();
    let template = TEMPLATE
        .get_or_init(|| {
            let server = server_url();
            blocking(async move {
                let mut admin = admin_connection(&server).await;
                let stale: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'checkout_test_payments%'",
                )
                .fetch_all(&mut admin)
                .await
                .unwrap();
                for name in stale {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut admin)
                        .await
                        .unwrap();
                }
                sqlx::query("CREATE DATABASE checkout_test_payments")
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let pool = PgPool::connect(&format!("{server}/checkout_test_payments"))
                    .await
                    .unwrap();
                common::db::migrate(&pool).await.unwrap();
                pool.close().await;
            });
            "checkout_test_payments".to_owned()
        })
        .clone();
    let name = format!("checkout_test_payments_{}", &common::id::new_id("d")[2..14]);
    let sql = format!("CREATE DATABASE {name} TEMPLATE {template}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin_connection(&server).await)
        .await
        .unwrap();
    format!("{server}/{name}")
}
