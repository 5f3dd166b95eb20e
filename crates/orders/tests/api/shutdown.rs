//! Stopping a real orders process: SIGTERM ends the open event streams and the process exits
//! within the drain bound instead of waiting on a stream that would run for minutes.

use std::{process::Stdio, time::Duration};

use tokio::process::Command;

use crate::support::{self, settings, spawn_with};

/// Far past the drain bound: the assertion is that the process exits, not how fast.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn sigterm_ends_an_open_event_stream_and_the_process_exits() {
    // The in-process app places an order (no worker: it stays pending, so nothing but the
    // shutdown can end its stream).
    let app = spawn_with(settings().await, false).await;
    let sku = app.product(100, 5).await;
    let order = app.order(&app.cart_with(&sku, 1).await, None).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut process = Command::new(env!("CARGO_BIN_EXE_orders"))
        .arg("serve")
        .env_clear()
        .env("APP_ENV", "development")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", &app.settings.db.url)
        .env("MIGRATE_ON_START", "false")
        .env("REDIS_URL", testkit::redis_url())
        .env("CART_URL", &app.cart_url)
        .env("EVENT_STREAM_MAX_SECS", "3600")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the orders binary runs");
    support::eventually("the orders process answers", || async {
        app.http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let mut stream = app
        .http
        .get(format!("{url}/v1/orders/{order}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().expect("the first event");
    assert!(
        String::from_utf8_lossy(&first).contains("id: pending"),
        "{first:?}"
    );

    let pid = i32::try_from(process.id().expect("the process runs")).unwrap();
    // SAFETY: `kill` reads nothing of ours; the pid is our own child's, still unreaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    let rest = tokio::time::timeout(EXIT_DEADLINE, stream.text())
        .await
        .expect("the event stream ends on shutdown");
    assert!(rest.is_ok(), "the stream ends cleanly, not cut: {rest:?}");
    let status = tokio::time::timeout(EXIT_DEADLINE, process.wait())
        .await
        .expect("the process exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
