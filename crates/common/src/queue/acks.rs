//! A worker's completions, recorded in batches: each finished job waits for the statement
//! that deletes it, and every job that finishes while one statement is on its way goes in
//! the next. Under a backlog that is one statement for many jobs instead of one each; a
//! lone job waits for no one. A job's slot is given back only once it is recorded.

use tokio::sync::{mpsc, oneshot};

use super::Queue;

type Done = (i64, oneshot::Sender<Result<(), String>>);

/// The most jobs one statement records.
const MOST: usize = 512;

/// Where a worker's settling sends its finished jobs.
#[derive(Clone)]
pub(super) struct Acks {
    done: mpsc::UnboundedSender<Done>,
}

impl Acks {
    /// Starts recording the completions of `worker`; it stops when the last `Acks` is gone.
    pub(super) fn start(queue: Queue, worker: String) -> Self {
        let (done, mut finished) = mpsc::unbounded_channel::<Done>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while finished.recv_many(&mut batch, MOST).await > 0 {
                let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
                let recorded = queue
                    .complete(&ids, &worker)
                    .await
                    .map_err(|e| e.to_string());
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(recorded.clone());
                }
            }
        });
        Self { done }
    }

    /// Records job `id` done, with whatever else finished meanwhile.
    pub(super) async fn done(&self, id: i64) -> Result<(), String> {
        let (reply, recorded) = oneshot::channel();
        self.done
            .send((id, reply))
            .map_err(|_| "the worker is stopping".to_owned())?;
        recorded
            .await
            .map_err(|_| "the worker is stopping".to_owned())?
    }
}
