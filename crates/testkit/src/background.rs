//! A service's worker run as a task of the test, which a test can start again, stop with a
//! drain, or kill as a crash would; it never outlives the test app that holds it.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// At most one running worker task and the token that stops it.
#[derive(Default)]
pub struct Background {
    running: Option<(JoinHandle<()>, CancellationToken)>,
}

impl Background {
    /// Starts `run` with a fresh token; a task already running is cancelled and aborted.
    pub fn start<F>(&mut self, run: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = CancellationToken::new();
        let handle = tokio::spawn(run(token.clone()));
        if let Some((old, old_token)) = self.running.replace((handle, token)) {
            old_token.cancel();
            old.abort();
        }
    }

    /// Cancels the task and waits until it has drained and ended.
    pub async fn stop(&mut self) {
        if let Some((handle, token)) = self.running.take() {
            token.cancel();
            let _ = handle.await;
        }
    }

    /// Aborts the task where it stands, as a crash would: no draining, no cleanup.
    pub fn kill(&mut self) {
        if let Some((handle, _)) = self.running.take() {
            handle.abort();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some((handle, token)) = self.running.take() {
            token.cancel();
            handle.abort();
        }
    }
}
